/**
 * `tsx scripts/temporal-tools.ts <cli|test-server> [--install]`: prints the path of the Temporal
 * tool the project uses: the CLI (dev server; see dev/temporal-cli.ts) or the time-skipping test
 * server (the workflow unit tests; see dev/temporal-test-server.ts). With --install (the npm
 * postinstall step) it installs the tool into .tools/ when none is found; failing to do so is a
 * warning, not a failed `npm install`: the tests then say what is missing.
 */
import { errorMessage } from '../src/errors.js';
import { resolveTemporalCli } from '../dev/temporal-cli.js';
import { resolveTemporalTestServer } from '../dev/temporal-test-server.js';

const USAGE = 'usage: tsx scripts/temporal-tools.ts <cli|test-server> [--install]';

interface Tool {
  resolve: (options: { install: boolean; log: (message: string) => void }) => Promise<string>;
  /** Who needs it, for the warning when it cannot be installed. */
  neededBy: string;
}

const TOOLS: Record<string, Tool> = {
  cli: { resolve: resolveTemporalCli, neededBy: '`npm start` and `npm test` need the Temporal CLI' },
  'test-server': {
    resolve: resolveTemporalTestServer,
    neededBy: 'the workflow tests (test/workflows) need the Temporal test server',
  },
};

async function main(args: string[]): Promise<number> {
  if (args.some((a) => a === '--help' || a === '-h')) {
    console.log(USAGE);
    return 0;
  }
  const install = args.includes('--install');
  const names = args.filter((a) => a !== '--install');
  const tool = names.length === 1 ? TOOLS[names[0]!] : undefined;
  if (!tool) {
    console.error(`expected one tool name, got ${names.length ? names.join(' ') : 'none'}\n${USAGE}`);
    return 1;
  }
  const prefix = `temporal ${names[0]}:`;
  try {
    console.log(await tool.resolve({ install, log: (m) => console.error(`${prefix} ${m}`) }));
    return 0;
  } catch (err) {
    if (!install) {
      console.error(errorMessage(err));
      return 1;
    }
    console.error(`${prefix} WARNING: could not install it; ${tool.neededBy}.\n${errorMessage(err)}`);
    return 0;
  }
}

process.exitCode = await main(process.argv.slice(2));
