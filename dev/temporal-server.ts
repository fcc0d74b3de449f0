/**
 * The Temporal CLI's dev server (`temporal server start-dev`) for `npm start` and the tests, and
 * namespace set-up for any Temporal server. A real Temporal server, never a stand-in.
 */
import { describeFailure, runCommand, type CommandResult } from './exec.js';
import { freePort } from './free-port.js';
import { startServerProcess } from './server-process.js';
import { ACTOR_SEARCH_ATTRIBUTES } from '../src/workflows/search-attributes.js';
import { waitFor } from './wait.js';

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 10_000;
/** Bound on one CLI call (they take ~0.1 s; a hung server must not hang the caller). */
const CLI_TIMEOUT_MS = 15_000;
const NAMESPACE_VISIBLE_TIMEOUT_MS = 30_000;

/**
 * DESIGN §2.2. The history service reads each task queue of a shard at most `…MaxPollRPS` times
 * a second (default 20), and the dev server has one shard: every workflow task and activity
 * waited up to 50 ms for a read, and the whole server ran ~20 workflow tasks a second. Every
 * server the project starts (dev stack, tests, benchmarks) gets these limits, and the compose
 * fleet the same (docker/temporal/dynamicconfig.yaml, checked by test/docker-compose.test.ts).
 * Values measured in docs/performance.md.
 */
export const QUEUE_POLL_LIMITS: Readonly<Record<string, number>> = {
  'history.transferProcessorMaxPollRPS': 1000,
  'history.timerProcessorMaxPollRPS': 1000,
  'history.visibilityProcessorMaxPollRPS': 1000,
};

export interface StartTemporalDevServerOptions {
  cliPath: string;
  /** Frontend gRPC port; a free one if omitted. */
  port?: number;
  /** Web UI port; `null` runs headless; a free one if omitted. */
  uiPort?: number | null;
  /** SQLite file that keeps the server's state across runs; in memory if omitted. */
  dbFile?: string;
  /** Receives the server's own output lines. */
  log?: (line: string) => void;
  /** Server dynamic config, e.g. `limit.historyCount.suggestContinueAsNew` → 150; on top of QUEUE_POLL_LIMITS. */
  dynamicConfig?: Record<string, string | number>;
}

export interface TemporalDevServer {
  /** `host:port` of the frontend, for TEMPORAL_ADDRESS. */
  address: string;
  uiUrl: string | null;
  /** SIGTERM to the server's process group, SIGKILL if it lingers. Idempotent. */
  stop(): Promise<void>;
}

/** Starts the dev server and resolves once its frontend serves the `default` namespace. */
export async function startTemporalDevServer(options: StartTemporalDevServerOptions): Promise<TemporalDevServer> {
  const { cliPath, dbFile, log } = options;
  const port = options.port ?? (await freePort());
  const uiPort = options.uiPort === undefined ? await freePort() : options.uiPort;
  const address = `${HOST}:${port}`;
  const args = ['server', 'start-dev', '--ip', HOST, '--port', String(port), '--log-level', 'error'];
  args.push(...(uiPort === null ? ['--headless'] : ['--ui-port', String(uiPort)]));
  if (dbFile) args.push('--db-filename', dbFile);
  for (const [key, value] of Object.entries({ ...QUEUE_POLL_LIMITS, ...options.dynamicConfig }))
    args.push('--dynamic-config-value', `${key}=${value}`);

  const server = await startServerProcess({
    name: 'Temporal dev server',
    command: cliPath,
    args,
    ready: () =>
      cliSucceeds(cliPath, ['operator', 'namespace', 'describe', '--namespace', 'default', '--address', address]),
    readyTimeoutMs: READY_TIMEOUT_MS,
    readyIntervalMs: 200,
    stopGraceMs: STOP_GRACE_MS,
    ...(log ? { log } : {}),
  });
  return { address, uiUrl: uiPort === null ? null : `http://${HOST}:${uiPort}`, stop: () => server.stop() };
}

/**
 * Makes `namespace` exist on the server at `address` with Dormouse's search attributes
 * registered. Idempotent, so every start of the dev stack and every test file may call it.
 */
export async function ensureNamespace(cliPath: string, address: string, namespace: string): Promise<void> {
  const target = ['--namespace', namespace, '--address', address];
  if (!(await cliSucceeds(cliPath, ['operator', 'namespace', 'describe', ...target]))) {
    const create = await runCli(cliPath, ['operator', 'namespace', 'create', ...target]);
    // Someone else may have created it in between: that is as good.
    if (create.exitCode !== 0 && !/already exists/i.test(create.stderr)) {
      throw new Error(
        `cannot create Temporal namespace ${namespace}: ${describeFailure(cliPath, create.args, create)}`,
      );
    }
  }

  // A new namespace reaches the operator service through the server's namespace cache, which can
  // lag the create by seconds.
  const registered = await waitFor(() => listSearchAttributes(cliPath, target), {
    timeoutMs: NAMESPACE_VISIBLE_TIMEOUT_MS,
    intervalMs: 200,
    message: `namespace ${namespace} on ${address} to accept search attributes`,
  });
  for (const { name, type } of ACTOR_SEARCH_ATTRIBUTES) {
    if (registered.get(name) === type) continue;
    if (registered.has(name)) {
      throw new Error(
        `search attribute ${name} in namespace ${namespace} has type ${registered.get(name)}, Dormouse needs ${type}`,
      );
    }
    // One call per attribute: the CLI takes one --type, and given several --name it silently
    // registers only the first (CLI 1.9.1).
    const args = ['operator', 'search-attribute', 'create', '--name', name, '--type', CLI_TYPE_NAMES[type], ...target];
    const create = await runCli(cliPath, args);
    if (create.exitCode !== 0) {
      throw new Error(`cannot register search attribute ${name}: ${describeFailure(cliPath, create.args, create)}`);
    }
  }

  // Trust but verify: the CLI has reported success for attributes it did not register.
  const after = await listSearchAttributes(cliPath, target);
  const missing = ACTOR_SEARCH_ATTRIBUTES.filter(({ name, type }) => after.get(name) !== type).map((a) => a.name);
  if (missing.length > 0) {
    throw new Error(`search attributes ${missing.join(', ')} are still not registered in namespace ${namespace}`);
  }
}

/**
 * Deletes `namespace` and with it every workflow in it (the server finishes that in the
 * background); one that is already gone is fine. For the namespaces ephemeral stacks make.
 */
export async function deleteNamespace(cliPath: string, address: string, namespace: string): Promise<void> {
  const result = await runCli(cliPath, [
    'operator',
    'namespace',
    'delete',
    '--yes',
    '--namespace',
    namespace,
    '--address',
    address,
  ]);
  if (result.exitCode !== 0 && !/not found/i.test(result.stderr)) {
    throw new Error(`cannot delete Temporal namespace ${namespace}: ${describeFailure(cliPath, result.args, result)}`);
  }
}

const CLI_TYPE_NAMES: Record<'KEYWORD' | 'INT', string> = { KEYWORD: 'Keyword', INT: 'Int' };

/** Custom search attributes of a namespace, as name → type (`KEYWORD`, `INT`, ...). */
async function listSearchAttributes(cliPath: string, target: string[]): Promise<Map<string, string>> {
  const list = await runCli(cliPath, ['operator', 'search-attribute', 'list', '--output', 'json', ...target]);
  if (list.exitCode !== 0) {
    throw new Error(`cannot list search attributes: ${describeFailure(cliPath, list.args, list)}`);
  }
  const parsed = JSON.parse(list.stdout) as { customAttributes?: Record<string, string> };
  return new Map(
    Object.entries(parsed.customAttributes ?? {}).map(([name, type]) => [
      name,
      type.replace(/^INDEXED_VALUE_TYPE_/, ''),
    ]),
  );
}

async function runCli(cliPath: string, args: string[]): Promise<CommandResult & { args: string[] }> {
  return { args, ...(await runCommand(cliPath, args, { timeoutMs: CLI_TIMEOUT_MS })) };
}

async function cliSucceeds(cliPath: string, args: string[]): Promise<boolean> {
  return (await runCli(cliPath, args)).exitCode === 0;
}
