/**
 * `npm start`: the whole Dormouse stack on this machine (DESIGN §6). Postgres
 * (DATABASE_URL, or an embedded one keeping its data in .data/postgres), Temporal
 * (TEMPORAL_ADDRESS, or the CLI's dev server keeping its state in .data/temporal.db, UI on
 * :8233), two workers, the gateway and two runners hosting the demo actors
 * (dev/local-stack.ts brings them up). Ctrl-C stops everything, newest first.
 *
 * A development tool, not part of the product: it may use dev dependencies (pino-pretty).
 */
import { fileURLToPath } from 'node:url';
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

/** Runs the stack until Ctrl-C (SIGINT) or SIGTERM, then stops it; resolves with the exit code. */
export async function runDevStack(): Promise<number> {
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
      runners: RUNNERS,
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
  const { gatewayUrl } = stack;
  const lines = [
    '',
    'Dormouse is running.',
    `  gateway       ${gatewayUrl}`,
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

runIfEntryScript(import.meta.url, runDevStack);
