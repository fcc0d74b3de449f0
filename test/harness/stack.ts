/**
 * A Dormouse stack per test file: a fresh database and Temporal namespace on the run's shared
 * servers (see global-setup.ts), and real worker, gateway and runner processes.
 *
 *   const stack = await createTestStack();
 *   afterAll(() => stack.stop());
 *
 * Every process logs to a file under the run's log directory; a process that fails to start
 * reports its log file and last lines, which is where to look when a test fails.
 */
import { randomBytes } from 'node:crypto';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { inject } from 'vitest';
import { migrate } from '../../src/db/migrate.js';
import { createPool, type Db } from '../../src/db/pool.js';
import { freePort } from '../../dev/free-port.js';
import { startNatsServer, type NatsServer } from '../../dev/nats-server.js';
import { createDatabase, databaseUrl, dropDatabase } from '../../dev/postgres.js';
import { startNodeProcess, type NodeProcess } from '../../dev/processes.js';
import { ensureNamespace } from '../../dev/temporal-server.js';
import { allSettledOrThrow } from '../../dev/wait.js';
import { createLogger } from '../../src/log.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const WORKER_SCRIPT = join(ROOT, 'src/worker.ts');
export const GATEWAY_SCRIPT = join(ROOT, 'src/gateway/main.ts');
export const RUNNER_SCRIPT = join(ROOT, 'test/fixtures/runner.ts');

export interface StackProcessOptions {
  /** Defaults to `worker-N`, `gateway-N`, `runner-N`. */
  name?: string;
  /** Added to the stack's environment for this process only. */
  env?: Record<string, string>;
  /** The entry file (absolute, or relative to the project root); defaults per role. */
  script?: string;
  /** How long to wait for its `ready` line (default: the stack's). */
  readyTimeoutMs?: number;
}

export interface GatewayOptions extends StackProcessOptions {
  /** Defaults to the stack's gateway port for the first gateway, a free port for others. */
  port?: number;
}

export interface TestStackOptions {
  /** Added to every process's environment, e.g. shorter timings. */
  env?: Record<string, string>;
  /** Worker processes to start (default 1). */
  workers?: number;
  /** Start a gateway (default true). */
  gateway?: boolean;
  /** Runner processes to start (default: one with the default fixture). */
  runners?: StackProcessOptions[];
  /** How long each process may take to log `ready` (default 30 s). */
  readyTimeoutMs?: number;
  /** How long `stop()` gives a process after SIGTERM before SIGKILL (default 10 s). */
  stopGraceMs?: number;
  /**
   * Start a NATS server of this stack's own (dev/nats-server.ts, on a free port) and put its URL
   * in every process's DORMOUSE_NATS_URL, as for several gateways (DESIGN §2.1). Default false.
   */
  nats?: boolean;
}

/** A stack's NATS server, which a test may stop, kill and start again on the same port. */
export interface TestNats {
  /** `nats://127.0.0.1:<port>`, every process's DORMOUSE_NATS_URL; the same across restarts. */
  readonly url: string;
  readonly port: number;
  /** Whether it runs (started and not stopped or killed since). */
  readonly running: boolean;
  /** SIGTERM, then SIGKILL if it lingers; resolves once it has exited. Nothing if not running. */
  stop(): Promise<void>;
  /** SIGKILL (a crash); resolves once it has exited. Nothing if not running. */
  kill(): Promise<void>;
  /** Starts it again on the same port; resolves once it accepts connections. Rejects if running. */
  start(): Promise<void>;
  /** stop() then start(). */
  restart(): Promise<void>;
}

export type GatewayProcess = NodeProcess & { readonly url: string; readonly port: number };

export interface TestStack {
  /** Base URL of the stack's (first) gateway, also when it has not been started. */
  gatewayUrl: string;
  /** URL of this stack's own database. */
  databaseUrl: string;
  /** This stack's own Temporal namespace. */
  namespace: string;
  /** This stack's NATS server when started with `nats: true`. */
  nats: TestNats | undefined;
  /** A pool on this stack's database. */
  db: Db;
  /** A Temporal client on this stack's namespace. */
  temporal: Client;
  /** Where this stack's processes write their logs. */
  logDir: string;
  workers: NodeProcess[];
  gateways: GatewayProcess[];
  /** The first gateway, if started. */
  readonly gateway: GatewayProcess | undefined;
  runners: NodeProcess[];
  startWorker(options?: StackProcessOptions): Promise<NodeProcess>;
  startGateway(options?: GatewayOptions): Promise<GatewayProcess>;
  startRunner(options?: StackProcessOptions): Promise<NodeProcess>;
  /** Stops every process (runners, gateways, workers), closes connections, drops the database. */
  stop(): Promise<void>;
}

export async function createTestStack(options: TestStackOptions = {}): Promise<TestStack> {
  const id = randomBytes(4).toString('hex');
  const temporalAddress = inject('temporalAddress');
  const gatewayPort = await freePort();
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  const logDir = join(inject('logDir'), `stack-${id}`);
  const resources = await openResources(id, temporalAddress);
  let nats: ManagedNats | undefined;
  if (options.nats) {
    try {
      nats = await ManagedNats.start(join(logDir, 'nats.log'));
    } catch (err) {
      await resources.release().catch(() => undefined);
      throw err;
    }
  }

  const baseEnv: Record<string, string> = {
    DATABASE_URL: resources.databaseUrl,
    TEMPORAL_ADDRESS: temporalAddress,
    TEMPORAL_NAMESPACE: resources.namespace,
    DORMOUSE_GATEWAY_PORT: String(gatewayPort),
    DORMOUSE_GATEWAY_URL: gatewayUrl,
    DORMOUSE_WORKFLOW_BUNDLE: inject('workflowBundlePath'),
    // Tests that check tokens set them (and the mode) themselves.
    DORMOUSE_MODE: 'development',
    DORMOUSE_LOG_LEVEL: 'info',
    ...(nats ? { DORMOUSE_NATS_URL: nats.url } : {}),
    ...options.env,
  };
  const started = new Map<string, number>();
  let primaryGatewayPortTaken = false;
  const launch = (
    role: string,
    defaultScript: string,
    opts: StackProcessOptions,
    roleEnv: Record<string, string> = {},
  ): Promise<NodeProcess> => {
    // Numbered at launch, not when ready: parallel starts must not share a name (or a log file).
    const count = (started.get(role) ?? 0) + 1;
    started.set(role, count);
    const name = opts.name ?? `${role}-${count}`;
    return startNodeProcess({
      name,
      script: resolveScript(opts.script ?? defaultScript),
      env: { ...baseEnv, ...roleEnv, ...opts.env },
      logFile: join(logDir, `${name}.log`),
      readyTimeoutMs: opts.readyTimeoutMs ?? options.readyTimeoutMs,
      stopGraceMs: options.stopGraceMs,
    });
  };

  const workers: NodeProcess[] = [];
  const gateways: GatewayProcess[] = [];
  const runners: NodeProcess[] = [];
  const stack: TestStack = {
    gatewayUrl,
    databaseUrl: resources.databaseUrl,
    namespace: resources.namespace,
    nats,
    db: resources.db,
    temporal: new Client({ connection: resources.connection, namespace: resources.namespace }),
    logDir,
    workers,
    gateways,
    get gateway() {
      return gateways[0];
    },
    runners,
    async startWorker(opts = {}) {
      const proc = await launch('worker', WORKER_SCRIPT, opts);
      workers.push(proc);
      return proc;
    },
    async startGateway(opts = {}) {
      // The first gateway gets the stack's gateway URL; any other one a port of its own.
      const usePrimary = opts.port === undefined && !primaryGatewayPortTaken;
      if (usePrimary) primaryGatewayPortTaken = true;
      const port = opts.port ?? (usePrimary ? gatewayPort : await freePort());
      const url = `http://127.0.0.1:${port}`;
      const proc = await launch('gateway', GATEWAY_SCRIPT, opts, {
        DORMOUSE_GATEWAY_PORT: String(port),
        DORMOUSE_GATEWAY_URL: url,
      });
      const gateway = Object.assign(proc, { url, port });
      gateways.push(gateway);
      return gateway;
    },
    async startRunner(opts = {}) {
      const proc = await launch('runner', RUNNER_SCRIPT, opts);
      runners.push(proc);
      return proc;
    },
    stop: once(async () => {
      const errors: unknown[] = [];
      // Reverse start order: runners first; workers last, so that the workflows can still
      // handle what the runners and gateways report while they shut down.
      for (const group of [runners, gateways, workers]) {
        const results = await Promise.allSettled(group.map((p) => p.stop()));
        for (const r of results) if (r.status === 'rejected') errors.push(r.reason);
      }
      await nats?.stop().catch((err: unknown) => errors.push(err));
      await resources.release().catch((err: unknown) => errors.push(err));
      if (errors.length > 0) throw new AggregateError(errors, `stopping test stack ${id} failed: ${errors.join('; ')}`);
    }),
  };

  try {
    // Workers and the gateway do not depend on each other; runners connect to the gateway.
    await allSettledOrThrow([
      ...Array.from({ length: options.workers ?? 1 }, () => stack.startWorker()),
      ...(options.gateway === false ? [] : [stack.startGateway()]),
    ]);
    await allSettledOrThrow((options.runners ?? [{}]).map((runner) => stack.startRunner(runner)));
  } catch (err) {
    await stack.stop().catch(() => undefined);
    throw err;
  }
  return stack;
}

interface StackResources {
  databaseUrl: string;
  namespace: string;
  db: Db;
  connection: Connection;
  /** Closes the pool and the Temporal connection and drops the database. */
  release(): Promise<void>;
}

/** A migrated database `dormouse_t_<id>` and a namespace `t-<id>`, with a pool and a connection. */
async function openResources(id: string, temporalAddress: string): Promise<StackResources> {
  const adminUrl = inject('adminDatabaseUrl');
  const databaseName = `dormouse_t_${id}`;
  const namespace = `t-${id}`;
  const url = databaseUrl(adminUrl, databaseName);
  let db: Db | undefined;
  let connection: Connection | undefined;
  const release = async (): Promise<void> => {
    await connection?.close();
    await db?.end();
    await dropDatabase(adminUrl, databaseName);
  };

  await createDatabase(adminUrl, databaseName);
  try {
    await migrate(url, createLogger('test-stack', 'warn'));
    await ensureNamespace(inject('temporalCliPath'), temporalAddress, namespace);
    db = createPool(url, { max: 5, applicationName: 'dormouse-test' });
    // An idle client dropped by the server must not crash the test process; the next query fails.
    db.on('error', () => undefined);
    connection = await Connection.connect({ address: temporalAddress });
    return { databaseUrl: url, namespace, db, connection, release };
  } catch (err) {
    await release().catch(() => undefined);
    throw err;
  }
}

/** TestNats over dev/nats-server.ts: each start() is a new nats-server process on the same port. */
class ManagedNats implements TestNats {
  private server: NatsServer | undefined;

  private constructor(
    readonly port: number,
    private readonly logFile: string,
  ) {}

  static async start(logFile: string): Promise<ManagedNats> {
    const first = await startNatsServer({ logFile });
    const nats = new ManagedNats(first.port, logFile);
    nats.server = first;
    return nats;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.server !== undefined;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    await server?.stop();
  }

  async kill(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    await server?.kill();
  }

  async start(): Promise<void> {
    if (this.server) throw new Error(`the stack's NATS server already runs on ${this.url}`);
    this.server = await startNatsServer({ port: this.port, logFile: this.logFile });
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

function resolveScript(script: string): string {
  return isAbsolute(script) ? script : join(ROOT, script);
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= fn());
}
