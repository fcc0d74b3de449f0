/**
 * `tsx scripts/tools.ts <tool>... [--install]`: prints the path of each external tool the project
 * runs, one a line: `temporal-cli` (the dev server; see dev/temporal-cli.ts),
 * `temporal-test-server` (the workflow unit tests; see dev/temporal-test-server.ts) and
 * `nats-server` (the bus between gateways; see dev/nats-server.ts). With --install (the npm
 * postinstall step) it installs a tool into .tools/ when none is found; failing to do so is a
 * warning, not a failed `npm install`: what needs the tool then says what is missing.
 */
import { errorMessage } from '../src/errors.js';
import { resolveNatsServer } from '../dev/nats-server.js';
import { resolveTemporalCli } from '../dev/temporal-cli.js';
import { resolveTemporalTestServer } from '../dev/temporal-test-server.js';

interface Tool {
  resolve: (options: { install: boolean; log: (message: string) => void }) => Promise<string>;
  /** Who needs it, for the warning when it cannot be installed. */
  neededBy: string;
}

const TOOLS: Record<string, Tool> = {
  'temporal-cli': { resolve: resolveTemporalCli, neededBy: '`npm start` and `npm test` need the Temporal CLI' },
  'temporal-test-server': {
    resolve: resolveTemporalTestServer,
    neededBy: 'the workflow tests (test/workflows) need the Temporal test server',
  },
  'nats-server': {
    resolve: resolveNatsServer,
    neededBy: '`npm start -- --gateways N` and the multi-gateway tests and benchmarks need nats-server',
  },
};

const USAGE = `usage: tsx scripts/tools.ts <${Object.keys(TOOLS).join('|')}>... [--install]`;

async function main(args: string[]): Promise<number> {
  if (args.some((a) => a === '--help' || a === '-h')) {
    console.log(USAGE);
    return 0;
  }
  const install = args.includes('--install');
  const names = args.filter((a) => a !== '--install');
  const unknown = names.filter((name) => !Object.hasOwn(TOOLS, name));
  if (names.length === 0 || unknown.length > 0) {
    const got = names.length === 0 ? 'no tool name' : `unknown tool ${unknown.join(', ')}`;
    console.error(`${got}\n${USAGE}`);
    return 1;
  }
  let exitCode = 0;
  // One after the other: each install runs pip, and their messages must not interleave.
  for (const name of names) {
    const tool = TOOLS[name]!;
    const prefix = `${name}:`;
    try {
      console.log(await tool.resolve({ install, log: (m) => console.error(`${prefix} ${m}`) }));
    } catch (err) {
      if (install) {
        console.error(`${prefix} WARNING: could not install it; ${tool.neededBy}.\n${errorMessage(err)}`);
      } else {
        console.error(errorMessage(err));
        exitCode = 1;
      }
    }
  }
  return exitCode;
}

process.exitCode = await main(process.argv.slice(2));
