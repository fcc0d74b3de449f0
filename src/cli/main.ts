/**
 * `dormouse`, the command line (bin/dormouse.mjs runs this file; so does
 * `node --import tsx src/cli/main.ts`):
 *
 *   worker | gateway                              long-running: one worker, one gateway
 *   actors create|get|list|destroy|sleep|wake     the gateway's management API
 *   ws <actorId> [path]                           an interactive WebSocket to an actor
 *   doctor                                        is this installation ready?
 *
 * Exit codes: 0 done, 1 failed (a message on stderr says why), 2 the command line was wrong.
 * The long-running commands log with pino, as `tsx src/worker.ts` and the others always have;
 * the short ones print tables, or one JSON document with `--json`.
 */
import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { errorMessage } from '../errors.js';
import { registerActorCommands } from './actors.js';
import { registerWsCommand } from './ws.js';

const USAGE_ERROR = 2;

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

function buildProgram(): Command {
  const program = new Command('dormouse')
    .description('Dormouse, a durable actor orchestrator on Temporal and PostgreSQL')
    .version(version)
    // Before any subcommand is added, which inherits it: usage errors throw instead of exiting 1.
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');
  registerProcessCommands(program);
  registerActorCommands(program);
  registerWsCommand(program);
  registerDoctorCommand(program);
  return program;
}

// The commands below import their modules on use: those load the Temporal SDK (the worker its
// native bridge too) and pino-pretty, which `actors list` need not pay for.

/** The long-running commands; each runs exactly what its own entry script runs. */
function registerProcessCommands(program: Command): void {
  program
    .command('worker')
    .description('run one worker from the environment (DATABASE_URL, TEMPORAL_ADDRESS, ...)')
    .action(async () => {
      process.exitCode = await (await import('../worker.js')).runWorkerProcess();
    });
  program
    .command('gateway')
    .description('run one gateway from the environment (DATABASE_URL, TEMPORAL_ADDRESS, DORMOUSE_GATEWAY_PORT, ...)')
    .action(async () => {
      process.exitCode = await (await import('../gateway/main.js')).runGatewayProcess();
    });
}

function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description(
      'check that Temporal and Postgres are reachable, the schema current, the search attributes registered and runners connected',
    )
    .option('--json', 'print the checks as JSON')
    .action(async (options: { json?: boolean }) => {
      process.exitCode = await (await import('./doctor.js')).doctor(options);
    });
}

/** Runs the command line; resolves with the exit code. Commands report through process.exitCode or by throwing. */
async function main(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (err) {
    // Commander has printed its message already; help and --version end this way too, with 0.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : USAGE_ERROR;
    process.stderr.write(`error: ${errorMessage(err)}\n`);
    return 1;
  }
}

// Exit rather than wait for the event loop: stdin, or a connection a command left open, must not
// keep a finished command alive.
process.exit(await main(process.argv));
