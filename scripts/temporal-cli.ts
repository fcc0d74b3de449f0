/**
 * `tsx scripts/temporal-cli.ts [--install]`: prints the path of the Temporal CLI the project
 * uses (see dev/temporal-cli.ts). With --install (the npm postinstall step) it installs the
 * CLI into .tools/ when none is found; failing to do so is a warning, not a failed `npm install`:
 * the tests then say what is missing.
 */
import { errorMessage } from '../src/errors.js';
import { resolveTemporalCli } from '../dev/temporal-cli.js';

const USAGE = 'usage: tsx scripts/temporal-cli.ts [--install]';

async function main(args: string[]): Promise<number> {
  if (args.some((a) => a === '--help' || a === '-h')) {
    console.log(USAGE);
    return 0;
  }
  const unknown = args.filter((a) => a !== '--install');
  if (unknown.length > 0) {
    console.error(`unknown argument(s): ${unknown.join(' ')}\n${USAGE}`);
    return 1;
  }
  const install = args.includes('--install');
  try {
    const path = await resolveTemporalCli({ install, log: (m) => console.error(`temporal-cli: ${m}`) });
    console.log(path);
    return 0;
  } catch (err) {
    if (!install) {
      console.error(errorMessage(err));
      return 1;
    }
    console.error(
      `temporal-cli: WARNING: could not install the Temporal CLI; \`npm start\` and \`npm test\` need it.\n${errorMessage(err)}`,
    );
    return 0;
  }
}

process.exitCode = await main(process.argv.slice(2));
