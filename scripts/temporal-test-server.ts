/**
 * `tsx scripts/temporal-test-server.ts [--install]`: prints the path of the time-skipping test
 * server the workflow unit tests use (see dev/temporal-test-server.ts). With --install (the npm
 * postinstall step) it installs the server into .tools/ when none is found; failing to do so is a
 * warning, not a failed `npm install`: the workflow tests then say what is missing.
 */
import { errorMessage } from '../src/errors.js';
import { resolveTemporalTestServer } from '../dev/temporal-test-server.js';

const USAGE = 'usage: tsx scripts/temporal-test-server.ts [--install]';

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
    const path = await resolveTemporalTestServer({ install, log: (m) => console.error(`temporal-test-server: ${m}`) });
    console.log(path);
    return 0;
  } catch (err) {
    if (!install) {
      console.error(errorMessage(err));
      return 1;
    }
    console.error(
      `temporal-test-server: WARNING: could not install the Temporal test server; the workflow tests (test/workflows) need it.\n${errorMessage(err)}`,
    );
    return 0;
  }
}

process.exitCode = await main(process.argv.slice(2));
