/**
 * `npm start`: the whole Dormouse stack on this machine (DESIGN §6). Postgres
 * (DATABASE_URL, or an embedded one keeping its data in .data/postgres), Temporal
 * (TEMPORAL_ADDRESS, or the CLI's dev server keeping its state in .data/temporal.db, UI on
 * :8233), two workers, the gateway and two runners hosting the demo actors
 * (dev/local-stack.ts brings them up). Ctrl-C stops everything, newest first.
 *
 * `npm start -- --gateways N` runs N gateways on 6420, 6421, … sharing one NATS (DESIGN §2.1,
 * §6), with at least one demo runner per gateway, runner i on gateway i mod N.
 *
 * A development tool, not part of the product: it may use dev dependencies (pino-pretty).
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import PinoPretty from 'pino-pretty';
import { loadConfig } from '../src/config.js';
import { startLocalStack, type LocalStack } from './local-stack.js';
import { prettyLogger } from './pretty-log.js';
import { onShutdownSignal } from './shutdown-signal.js';
import { errorMessage } from '../src/errors.js';
import { runIfEntryScript } from '../src/process-entry.js';

const DATA_DIR = fileURLToPath(new URL('../.data', import.meta.url));
const WORKERS = 2;
const RUNNERS = 2;
/** Bound on --gateways: each is a Node process, on consecutive ports. */
const MAX_GATEWAYS = 32;
const USAGE = `usage: npm start [-- --gateways N]   (N from 1 to ${MAX_GATEWAYS}, default 1)`;

export interface StartArgs {
  gateways: number;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

/** The command line of `npm start`; anything it does not know is a UsageError. */
export function parseStartArgs(argv: string[]): StartArgs {
  let values: { gateways?: string };
  // parseArgs takes `--gateways -1` for a missing value before another option; say what is wrong.
  const negative = argv.findIndex((arg, i) => argv[i - 1] === '--gateways' && /^-\d/.test(arg));
  if (negative >= 0) throw new UsageError(gatewaysProblem(argv[negative]!));
  try {
    ({ values } = parseArgs({ args: argv, options: { gateways: { type: 'string' } }, strict: true }));
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
  if (values.gateways === undefined) return { gateways: 1 };
  const text = values.gateways.trim();
  const gateways = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(gateways >= 1 && gateways <= MAX_GATEWAYS)) {
    throw new UsageError(gatewaysProblem(values.gateways));
  }
  return { gateways };
}

function gatewaysProblem(value: string): string {
  return `--gateways must be a whole number from 1 to ${MAX_GATEWAYS}, not '${value}'`;
}

/**
 * Runs the stack until Ctrl-C (SIGINT) or SIGTERM, then stops it; resolves with the exit code.
 * A bad command line is reported on stderr with exit code 1 before anything starts.
 */
export async function runDevStack(argv: string[] = []): Promise<number> {
  let args: StartArgs;
  try {
    args = parseStartArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`npm start: ${err.message}\n${USAGE}\n`);
    return 1;
  }
  const config = loadConfig();
  const log = prettyLogger(config.logLevel, 1);
  const shutdown = onShutdownSignal(log);

  let stack: LocalStack;
  try {
    stack = await startLocalStack({
      config,
      log,
      dataDir: DATA_DIR,
      ports: 'well-known',
      temporalUi: true,
      workers: WORKERS,
      gateways: args.gateways,
      // Every gateway holds a runner, so that each one serves actors of its own.
      runners: Math.max(RUNNERS, args.gateways),
      output: linePrinter,
      signal: shutdown,
    });
  } catch (err) {
    // Interrupted start-up is not a failure; what had started is stopped already.
    if (shutdown.aborted) return 0;
    log.error(errorMessage(err));
    return 1;
  }
  printBanner(stack);
  if (!shutdown.aborted) await new Promise((resolve) => shutdown.addEventListener('abort', resolve, { once: true }));
  // Whatever could not be stopped has been logged; Ctrl-C still ends the dev stack normally.
  await stack.stop().catch(() => undefined);
  return 0;
}

/** Straight to stdout, whatever the log level: this is what `npm start` is for. */
function printBanner(stack: LocalStack): void {
  const { gatewayUrl, gatewayUrls } = stack;
  const gatewayLines =
    gatewayUrls.length === 1
      ? [`  gateway       ${gatewayUrl}`]
      : [
          ...gatewayUrls.map((url, i) => `  gateway ${String(i + 1).padEnd(6)}${url}`),
          `  NATS          ${stack.natsUrl ?? '(none)'}`,
        ];
  const lines = [
    '',
    'Dormouse is running.',
    ...gatewayLines,
    `  Temporal UI   ${stack.temporalUiUrl ?? `(your Temporal server at ${stack.temporalAddress})`}`,
    `  Postgres      ${stack.databaseUrl}`,
    `  logs          ${stack.logDir}`,
    '',
    'Try:',
    `  curl -s -X PUT ${gatewayUrl}/actors -H 'content-type: application/json' -d '{"name":"chat","key":"lobby"}'`,
    `  curl -s ${gatewayUrl}/actors/<actorId>/http/state`,
    '',
    'Press Ctrl-C to stop.',
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

const PREFIX_COLORS = [36, 35, 33, 32, 34, 31];
let nextColor = 0;

/** Prints a child's lines behind its name: pino JSON rendered readable, anything else as is. */
function linePrinter(name: string): (line: string) => void {
  const color = PREFIX_COLORS[nextColor++ % PREFIX_COLORS.length]!;
  const prefix = paint(color, `${name.padEnd(9)} |`);
  const pretty = PinoPretty.prettyFactory({
    colorize: useColor(),
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,component',
    singleLine: true,
  });
  return (line) => {
    const rendered = line.startsWith('{') ? pretty(line).trimEnd() : line;
    for (const part of rendered.split('\n')) process.stdout.write(`${prefix} ${part}\n`);
  };
}

function useColor(): boolean {
  return process.stdout.isTTY === true;
}

function paint(color: number, text: string): string {
  return useColor() ? `\u001b[${color}m${text}\u001b[39m` : text;
}

runIfEntryScript(import.meta.url, () => runDevStack(process.argv.slice(2)));
