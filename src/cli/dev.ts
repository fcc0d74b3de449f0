/**
 * `npm start`: the whole Dormouse stack on this machine (DESIGN §6). Postgres (DATABASE_URL, or
 * an embedded one keeping its data in .data/postgres), Temporal (TEMPORAL_ADDRESS, or the CLI's
 * dev server keeping its state in .data/temporal.db, UI on :8233), two workers, the gateway and
 * two runners hosting the demo actors. Ctrl-C stops everything, newest first.
 *
 * A development tool, not part of the product: it may use dev dependencies (pino-pretty).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import PinoPretty from 'pino-pretty';
import { loadConfig, type Config } from '../config.js';
import { migrate } from '../db/migrate.js';
import { isPortFree, preferredOrFreePort } from '../dev/free-port.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../dev/postgres.js';
import { describeExit, startNodeProcess, type NodeProcess, type NodeProcessOptions } from '../dev/processes.js';
import { resolveTemporalCli } from '../dev/temporal-cli.js';
import { ensureNamespace, startTemporalDevServer, type TemporalDevServer } from '../dev/temporal-server.js';
import { allSettledOrThrow, errorMessage } from '../dev/wait.js';
import { writeWorkflowBundle } from '../workflow-bundle.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DATA_DIR = join(ROOT, '.data');
const LOG_DIR = join(DATA_DIR, 'logs');
const WORKER_SCRIPT = join(ROOT, 'src/worker.ts');
const GATEWAY_SCRIPT = join(ROOT, 'src/gateway/main.ts');
const RUNNER_SCRIPT = join(ROOT, 'examples/runner.ts');
const WORKERS = 2;
const RUNNERS = 2;
const POSTGRES_PORT = 5433;
const TEMPORAL_PORT = 7233;
const TEMPORAL_UI_PORT = 8233;

/** What is running, so that shutdown stops exactly that, in reverse order of dependency. */
interface DevStack {
  postgres?: EmbeddedPostgres;
  temporal?: TemporalDevServer;
  workers: NodeProcess[];
  gateway?: NodeProcess;
  runners: NodeProcess[];
}

interface Endpoints {
  databaseUrl: string;
  temporalAddress: string;
  temporalUiUrl: string | null;
  workflowBundlePath: string;
}

async function main(): Promise<number> {
  const config = loadConfig();
  const log = devLogger(config.logLevel);
  const stack: DevStack = { workers: [], runners: [] };
  const shutdown = onShutdownSignal(log);
  mkdirSync(LOG_DIR, { recursive: true });

  let exitCode = 0;
  try {
    const endpoints = await startServices(config, stack, log);
    shutdown.signal.throwIfAborted();
    await startProcesses(config, endpoints, stack, log, shutdown.signal);
    shutdown.signal.throwIfAborted();
    printBanner(config, endpoints);
    await new Promise((resolve) => shutdown.signal.addEventListener('abort', resolve, { once: true }));
  } catch (err) {
    if (!shutdown.signal.aborted) {
      log.error(errorMessage(err));
      exitCode = 1;
    }
  }
  await stopAll(stack, log);
  return exitCode;
}

/** Postgres, Temporal and the workflow bundle, in parallel: they do not depend on each other. */
async function startServices(config: Config, stack: DevStack, log: Logger): Promise<Endpoints> {
  const [databaseUrl, temporal, workflowBundlePath] = await allSettledOrThrow([
    startPostgres(config, stack, log),
    startTemporal(config, stack, log),
    writeWorkflowBundle(join(DATA_DIR, 'workflow-bundle.js')),
  ]);
  await migrate(databaseUrl, log);
  return { databaseUrl, temporalAddress: temporal.address, temporalUiUrl: temporal.uiUrl, workflowBundlePath };
}

async function startPostgres(config: Config, stack: DevStack, log: Logger): Promise<string> {
  if (config.databaseUrl) return config.databaseUrl;
  const { port, fellBack } = await preferredOrFreePort(POSTGRES_PORT);
  if (fellBack) log.warn(`port ${POSTGRES_PORT} is taken: embedded Postgres listens on ${port} instead`);
  const dataDir = join(DATA_DIR, 'postgres');
  stack.postgres = await startEmbeddedPostgres({ dataDir, port, persistent: true });
  log.info(`embedded Postgres on port ${port} (data in ${dataDir}, log in ${stack.postgres.logFile})`);
  return stack.postgres.url;
}

async function startTemporal(config: Config, stack: DevStack, log: Logger): Promise<{ address: string; uiUrl: string | null }> {
  const cliPath = await resolveTemporalCli({ install: false });
  if (config.temporal.addressGiven) {
    await ensureNamespace(cliPath, config.temporal.address, config.temporal.namespace);
    return { address: config.temporal.address, uiUrl: null };
  }
  const port = await preferredOrFreePort(TEMPORAL_PORT);
  const uiPort = await preferredOrFreePort(TEMPORAL_UI_PORT);
  if (port.fellBack) log.warn(`port ${TEMPORAL_PORT} is taken: the Temporal frontend listens on ${port.port} instead`);
  if (uiPort.fellBack) log.warn(`port ${TEMPORAL_UI_PORT} is taken: the Temporal UI listens on ${uiPort.port} instead`);
  stack.temporal = await startTemporalDevServer({
    cliPath,
    port: port.port,
    uiPort: uiPort.port,
    dbFile: join(DATA_DIR, 'temporal.db'),
    log: linePrinter('temporal'),
  });
  await ensureNamespace(cliPath, stack.temporal.address, config.temporal.namespace);
  log.info(`Temporal dev server on ${stack.temporal.address} (${cliPath})`);
  return { address: stack.temporal.address, uiUrl: stack.temporal.uiUrl };
}

/** Workers and the gateway together, then the runners, which connect to the gateway. */
async function startProcesses(config: Config, endpoints: Endpoints, stack: DevStack, log: Logger, shutdown: AbortSignal): Promise<void> {
  if (!(await isPortFree(config.gateway.port, config.gateway.host))) {
    throw new Error(`the gateway's port ${config.gateway.port} is in use; stop whatever holds it or set DORMOUSE_GATEWAY_PORT`);
  }
  const env: Record<string, string> = {
    DATABASE_URL: endpoints.databaseUrl,
    TEMPORAL_ADDRESS: endpoints.temporalAddress,
    TEMPORAL_NAMESPACE: config.temporal.namespace,
    DORMOUSE_GATEWAY_PORT: String(config.gateway.port),
    DORMOUSE_GATEWAY_URL: config.gateway.url,
    DORMOUSE_WORKFLOW_BUNDLE: endpoints.workflowBundlePath,
  };
  const start = (name: string, script: string): Promise<NodeProcess> =>
    startNodeProcess(devProcess(name, script, env)).then((proc) => {
      reportUnexpectedExit(proc, log, shutdown);
      return proc;
    });

  await allSettledOrThrow([
    ...Array.from({ length: WORKERS }, (_, i) => start(`worker-${i + 1}`, WORKER_SCRIPT).then((p) => void stack.workers.push(p))),
    start('gateway', GATEWAY_SCRIPT).then((p) => void (stack.gateway = p)),
  ]);
  shutdown.throwIfAborted();
  await allSettledOrThrow(
    Array.from({ length: RUNNERS }, (_, i) => start(`runner-${i + 1}`, RUNNER_SCRIPT).then((p) => void stack.runners.push(p))),
  );
}

function devProcess(name: string, script: string, env: Record<string, string>): NodeProcessOptions {
  return {
    name,
    script,
    env,
    logFile: join(LOG_DIR, `${name}.log`),
    // Its own process group: Ctrl-C reaches only this script, which stops the children in order.
    detached: true,
    onLine: linePrinter(name),
  };
}

function reportUnexpectedExit(proc: NodeProcess, log: Logger, shutdown: AbortSignal): void {
  void proc.exited.then((exit) => {
    if (!shutdown.aborted) log.warn(`${proc.name} exited (${describeExit(exit)}); its log is ${proc.logFile}`);
  });
}

/** Newest first: runners, the gateway, workers, then Temporal and Postgres. Every step bounded. */
async function stopAll(stack: DevStack, log: Logger): Promise<void> {
  const steps: [string, (() => Promise<unknown>)[]][] = [
    ['runners', stack.runners.map((p) => () => p.stop())],
    ['gateway', stack.gateway ? [() => stack.gateway!.stop()] : []],
    ['workers', stack.workers.map((p) => () => p.stop())],
    ['Temporal', stack.temporal ? [stack.temporal.stop] : []],
    ['Postgres', stack.postgres ? [stack.postgres.stop] : []],
  ];
  for (const [what, stops] of steps) {
    if (stops.length === 0) continue;
    log.info(`stopping ${what}`);
    for (const result of await Promise.allSettled(stops.map((stop) => stop()))) {
      if (result.status === 'rejected') log.error(`stopping ${what}: ${errorMessage(result.reason)}`);
    }
  }
  log.info('stopped');
}

/**
 * One Ctrl-C in a terminal arrives here two or three times within a few tens of milliseconds:
 * from the terminal itself and relayed by npm and tsx. Repeats within this window are that one.
 */
const REPEAT_WINDOW_MS = 1_000;

/**
 * The first SIGINT/SIGTERM aborts the returned signal (start-up stops at its next step, then
 * everything is stopped in order); a later one exits at once, and the exit handlers of
 * src/dev/processes.ts kill what still runs.
 */
function onShutdownSignal(log: Logger): AbortController {
  const controller = new AbortController();
  let firstAt = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!controller.signal.aborted) {
      firstAt = Date.now();
      log.info(`${signal}: stopping (press Ctrl-C again to force)`);
      controller.abort();
    } else if (Date.now() - firstAt > REPEAT_WINDOW_MS) {
      log.warn(`${signal} again: exiting now`);
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return controller;
}

/** Straight to stdout, whatever the log level: this is what `npm start` is for. */
function printBanner(config: Config, endpoints: Endpoints): void {
  const gatewayUrl = config.gateway.url;
  const lines = [
    '',
    'Dormouse is running.',
    `  gateway       ${gatewayUrl}`,
    `  Temporal UI   ${endpoints.temporalUiUrl ?? `(your Temporal server at ${endpoints.temporalAddress})`}`,
    `  Postgres      ${endpoints.databaseUrl}`,
    `  logs          ${LOG_DIR}`,
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

function devLogger(level: Config['logLevel']): Logger {
  return pino({ level, base: undefined }, PinoPretty({ colorize: useColor(), translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', sync: true }));
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

process.exitCode = await main();
// Lingering handles (a stubborn connection) must not keep a stopped dev stack alive.
process.exit();
