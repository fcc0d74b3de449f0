/**
 * A whole Dormouse stack on this machine (DESIGN §2), brought up in one call: Postgres, Temporal,
 * the workflow bundle, workers, the gateway (or several, sharing one NATS: DESIGN §2.1) and
 * runners. Two callers: `npm start`
 * (dev/start.ts: persistent data, well-known ports, the Temporal UI, output printed) and the
 * benchmarks (bench/: a throwaway directory, free ports, headless, output only in log files).
 * The tests have their own harness (test/harness), which shares one pair of servers among stacks.
 *
 * DATABASE_URL, TEMPORAL_ADDRESS and DORMOUSE_NATS_URL mean "use that server". A persistent stack uses the database
 * and namespace as configured; an ephemeral one makes a database and a namespace of its own there
 * and removes them on stop, so that it neither sees nor leaves anything behind.
 *
 * Every child runs in its own process group: a Ctrl-C in the terminal reaches only the caller,
 * which stops the stack in order (runners before the gateways before the workers before the servers).
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../src/config.js';
import { migrate } from '../src/db/migrate.js';
import type { Logger } from '../src/log.js';
import { writeWorkflowBundle } from '../src/workflow-bundle.js';
import { freePort, isPortFree, preferredOrFreePort } from './free-port.js';
import { startNatsServer } from './nats-server.js';
import { createDatabase, databaseUrl as databaseUrlOf, dropDatabase, startEmbeddedPostgres } from './postgres.js';
import { describeExit, startNodeProcess, type NodeProcess } from './processes.js';
import { scratchDirectories } from './scratch-dirs.js';
import { resolveTemporalCli } from './temporal-cli.js';
import { deleteNamespace, ensureNamespace, startTemporalDevServer } from './temporal-server.js';
import { errorMessage } from '../src/errors.js';
import { allSettledOrThrow, within } from './wait.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const WORKER_SCRIPT = join(ROOT, 'src/worker.ts');
const GATEWAY_SCRIPT = join(ROOT, 'src/gateway/main.ts');
const DEMO_RUNNER_SCRIPT = join(ROOT, 'examples/runner.ts');

/** What `npm start` has always listened on, and what DESIGN §2 and §6 tell people to open. */
const WELL_KNOWN_PORTS = { postgres: 5433, temporal: 7233, temporalUi: 8233, nats: 4222 } as const;

/** Bound on dropping an ephemeral database or deleting a namespace on a server we were given. */
const REMOVE_TIMEOUT_MS = 30_000;

export interface LocalStackOptions {
  config: Config;
  /** The stack's own progress and problems; its children log to their own files. */
  log: Logger;
  /**
   * Where the servers keep their state and the processes write their logs (`<dataDir>/logs`),
   * kept across runs. Omitted: a new temporary directory whose state is deleted on stop; its
   * `logs` folder is kept, for debugging a failed run.
   */
  dataDir?: string;
  /**
   * `well-known`: Postgres 5433, Temporal 7233 and its UI 8233 when free (else any free port,
   * with a warning), and the configured gateway port (DORMOUSE_GATEWAY_PORT), which must be free
   * because clients are told that URL. `free`: any free ports.
   */
  ports: 'well-known' | 'free';
  /** Serve the Temporal Web UI (when this stack runs the Temporal server). */
  temporalUi: boolean;
  workers: number;
  /**
   * Gateway processes (default 1). More than one share a NATS server (DORMOUSE_NATS_URL, else one
   * this stack runs, on 4222 when well-known and free) and listen on consecutive ports from the
   * configured one (`well-known`) or on free ports; the runners are spread across them.
   */
  gateways?: number;
  runners: number;
  /** The runners' entry file; default examples/runner.ts, which hosts the demo actors. */
  runnerScript?: string;
  /** Added to (and overriding) every child's environment, e.g. shorter timings. */
  env?: Record<string, string>;
  /** Makes a printer for a child's output lines (besides its log file); omitted: quiet. */
  output?: (name: string) => (line: string) => void;
  /** Aborting stops start-up at its next step; whatever had started is stopped again. */
  signal?: AbortSignal;
  /**
   * Keep the state of the servers this stack runs on disk (Temporal in a SQLite file, Postgres in
   * its data directory) also when ephemeral, so that `restartServer` can restart them with their
   * state, as the chaos run does (bench/chaos.ts). Deleted on stop with the rest when ephemeral.
   */
  restartableServers?: boolean;
}

export interface ExtraProcessOptions {
  /** Also names its log file, `<logDir>/<name>.log`. */
  name: string;
  /** Absolute path of its TypeScript entry file; it must log `"msg":"ready"` (dev/processes.ts). */
  script: string;
  /** Added to (and overriding) the stack's environment for this process. */
  env?: Record<string, string>;
}

export interface LocalStackProcesses {
  workers: readonly NodeProcess[];
  /** The first gateway. */
  gateway: NodeProcess;
  /** Every gateway, in the order of `gatewayUrls`. */
  gateways: readonly NodeProcess[];
  runners: readonly NodeProcess[];
  /** Those started with `startProcess`. */
  extra: readonly NodeProcess[];
}

export interface LocalStack {
  /** The first gateway's URL. */
  gatewayUrl: string;
  /** Every gateway's URL, the first one first. */
  gatewayUrls: readonly string[];
  /** The NATS server the gateways share; null with one gateway (frames stay in process). */
  natsUrl: string | null;
  /** `host:port` of the Temporal frontend. */
  temporalAddress: string;
  /** null when headless or when the server was given (TEMPORAL_ADDRESS). */
  temporalUiUrl: string | null;
  databaseUrl: string;
  namespace: string;
  /** The caller may put files here too; it is deleted on stop when the stack is ephemeral. */
  stateDir: string;
  logDir: string;
  processes: LocalStackProcesses;
  /** Starts another process wired to this stack; stop() stops it before everything else. */
  startProcess(options: ExtraProcessOptions): Promise<NodeProcess>;
  /**
   * Stops a server this stack runs and starts it again on the same port with its state on disk;
   * resolves once it serves. Needs `restartableServers`; rejects for a server that was given.
   */
  restartServer(server: ServerName): Promise<void>;
  /**
   * Stops everything, newest first, each step bounded; idempotent. Rejects (after trying every
   * step, each failure logged) if something could not be stopped.
   */
  stop(): Promise<void>;
}

/** A server the stack may run itself (as opposed to its Node processes). */
export type ServerName = 'temporal' | 'postgres' | 'nats';

/** Starts the whole stack and resolves once every process is ready; on failure nothing is left running. */
export async function startLocalStack(options: LocalStackOptions): Promise<LocalStack> {
  const gateways = options.gateways ?? 1;
  if (!Number.isInteger(gateways) || gateways < 1) {
    throw new Error(`the number of gateways must be a whole number of at least 1, not ${gateways}`);
  }
  const dirs = await prepareDirectories(options.dataDir);
  const running: Running = {
    stopping: false,
    workers: [],
    gateways: [],
    runners: [],
    extra: [],
    scratch: dirs.scratch,
  };
  const stop = once(() => stopAll(running, options.log));
  try {
    const services = await startServices(options, dirs, running);
    options.signal?.throwIfAborted();
    const { gatewayUrls, start } = await startProcesses(options, dirs, services, running);
    options.signal?.throwIfAborted();
    return {
      gatewayUrl: gatewayUrls[0]!,
      gatewayUrls,
      natsUrl: services.natsUrl,
      temporalAddress: services.temporalAddress,
      temporalUiUrl: services.temporalUiUrl,
      databaseUrl: services.databaseUrl,
      namespace: services.namespace,
      stateDir: dirs.stateDir,
      logDir: dirs.logDir,
      processes: {
        workers: running.workers,
        gateway: running.gateways[0]!,
        gateways: running.gateways,
        runners: running.runners,
        extra: running.extra,
      },
      startProcess: async ({ name, script, env }) => {
        const proc = await start(name, script, env);
        running.extra.push(proc);
        return proc;
      },
      restartServer: (server) => restartServer(running, server),
      stop,
    };
  } catch (err) {
    // Failures are logged by stopAll; the start-up error is the one to report.
    await stop().catch(() => undefined);
    throw err;
  }
}

interface Directories {
  stateDir: string;
  logDir: string;
  /** An ephemeral stack's state directory, deleted on stop; undefined when persistent. */
  scratch: string | undefined;
}

async function prepareDirectories(dataDir: string | undefined): Promise<Directories> {
  if (dataDir !== undefined) {
    const logDir = join(dataDir, 'logs');
    await mkdir(logDir, { recursive: true });
    return { stateDir: dataDir, logDir, scratch: undefined };
  }
  const { stateDir, logDir } = await scratchDirectories('dormouse-stack-');
  return { stateDir, logDir, scratch: stateDir };
}

/** Something the stack set up besides its processes, and how to undo it. */
interface Teardown {
  /** Logged as it starts, e.g. `stopping Temporal`. */
  what: string;
  run(): Promise<void>;
}

/** What is running, so that stopping stops exactly that, in reverse order of dependency. */
interface Running {
  /** Set once stopping begins: exits from then on are expected. */
  stopping: boolean;
  workers: NodeProcess[];
  /** In the order of their URLs (not of readiness). */
  gateways: NodeProcess[];
  runners: NodeProcess[];
  extra: NodeProcess[];
  nats?: Teardown;
  temporal?: Teardown;
  postgres?: Teardown;
  /** Set for the servers this stack runs itself with their state on disk (NATS keeps none). */
  restart?: Partial<Record<ServerName, () => Promise<void>>>;
  scratch: string | undefined;
}

async function restartServer(running: Running, server: ServerName): Promise<void> {
  const restart = running.restart?.[server];
  if (!restart) {
    const why = server === 'nats' ? 'it has one gateway or was given DORMOUSE_NATS_URL' : 'not with restartableServers';
    throw new Error(`${server} cannot be restarted: the stack does not run it (${why})`);
  }
  if (running.stopping) throw new Error(`${server} cannot be restarted: the stack is stopping`);
  await restart();
}

interface Services {
  databaseUrl: string;
  temporalAddress: string;
  temporalUiUrl: string | null;
  namespace: string;
  workflowBundlePath: string;
  /** For DORMOUSE_NATS_URL; null with one gateway. */
  natsUrl: string | null;
}

/** Postgres, Temporal, NATS and the workflow bundle, in parallel: they do not depend on each other. */
async function startServices(options: LocalStackOptions, dirs: Directories, running: Running): Promise<Services> {
  // Names for the database and namespace an ephemeral stack makes on servers it was given.
  const suffix = dirs.scratch === undefined ? undefined : randomBytes(4).toString('hex');
  const [databaseUrl, temporal, workflowBundlePath, natsUrl] = await allSettledOrThrow([
    startPostgres(options, dirs, running, suffix && `dormouse_${suffix}`),
    startTemporal(options, dirs, running, suffix && `dormouse-${suffix}`),
    writeWorkflowBundle(join(dirs.stateDir, 'workflow-bundle.js')),
    startNats(options, dirs, running),
  ]);
  await migrate(databaseUrl, options.log);
  return { databaseUrl, ...temporal, workflowBundlePath, natsUrl };
}

/** With several gateways: the given NATS (DORMOUSE_NATS_URL), else one of our own. */
async function startNats(options: LocalStackOptions, dirs: Directories, running: Running): Promise<string | null> {
  if ((options.gateways ?? 1) === 1) return null;
  const given = options.config.gateway.natsServers;
  if (given !== undefined) return given.join(',');
  const port = await choosePort(options, WELL_KNOWN_PORTS.nats, 'NATS');
  const logFile = join(dirs.logDir, 'nats.log');
  const print = options.output?.('nats');
  const start = () => startNatsServer({ port, logFile, ...(print ? { log: print } : {}) });
  let server = await start();
  running.nats = { what: 'stopping NATS', run: () => server.stop() };
  running.restart = {
    ...running.restart,
    nats: async () => {
      await server.stop();
      server = await start();
      options.log.info(`NATS restarted on ${server.url}`);
    },
  };
  options.log.info(`NATS on ${server.url} (log in ${logFile})`);
  return server.url;
}

async function startPostgres(
  options: LocalStackOptions,
  dirs: Directories,
  running: Running,
  ownDatabase: string | undefined,
): Promise<string> {
  const given = options.config.databaseUrl;
  if (given !== undefined) {
    if (ownDatabase === undefined) return given;
    await createDatabase(given, ownDatabase);
    running.postgres = {
      what: `dropping database ${ownDatabase}`,
      run: () => bounded(dropDatabase(given, ownDatabase), `dropping database ${ownDatabase}`),
    };
    return databaseUrlOf(given, ownDatabase);
  }
  const port = await choosePort(options, WELL_KNOWN_PORTS.postgres, 'embedded Postgres');
  const dataDir = join(dirs.stateDir, 'postgres');
  // A restartable ephemeral cluster keeps its data across restarts; the scratch removal deletes it.
  const persistent = dirs.scratch === undefined || options.restartableServers === true;
  let server = await startEmbeddedPostgres({ dataDir, port, persistent });
  running.postgres = { what: 'stopping Postgres', run: () => server.stop() };
  if (options.restartableServers) {
    running.restart = {
      ...running.restart,
      postgres: async () => {
        await server.stop();
        server = await startEmbeddedPostgres({ dataDir, port, persistent });
        options.log.info(`embedded Postgres restarted on port ${port}`);
      },
    };
  }
  options.log.info(`embedded Postgres on port ${port} (data in ${server.dataDir}, log in ${server.logFile})`);
  return server.url;
}

async function startTemporal(
  options: LocalStackOptions,
  dirs: Directories,
  running: Running,
  ownNamespace: string | undefined,
): Promise<Pick<Services, 'temporalAddress' | 'temporalUiUrl' | 'namespace'>> {
  const { config, log } = options;
  const cliPath = await resolveTemporalCli({ install: false });
  if (config.temporal.addressGiven) {
    const address = config.temporal.address;
    const namespace = ownNamespace ?? config.temporal.namespace;
    await ensureNamespace(cliPath, address, namespace);
    if (ownNamespace !== undefined) {
      running.temporal = {
        what: `deleting namespace ${namespace}`,
        run: () => bounded(deleteNamespace(cliPath, address, namespace), `deleting namespace ${namespace}`),
      };
    }
    return { temporalAddress: address, temporalUiUrl: null, namespace };
  }

  const port = await choosePort(options, WELL_KNOWN_PORTS.temporal, 'the Temporal frontend');
  const uiPort = options.temporalUi ? await choosePort(options, WELL_KNOWN_PORTS.temporalUi, 'the Temporal UI') : null;
  const logFile = createWriteStream(join(dirs.logDir, 'temporal.log'), { flags: 'a' });
  const print = options.output?.('temporal');
  const startServer = (): ReturnType<typeof startTemporalDevServer> =>
    startTemporalDevServer({
      cliPath,
      port,
      uiPort,
      // An ephemeral stack's server keeps its state in memory (nothing to delete afterwards),
      // unless it must survive restarts.
      ...(dirs.scratch === undefined || options.restartableServers
        ? { dbFile: join(dirs.stateDir, 'temporal.db') }
        : {}),
      log: (line) => {
        logFile.write(`${line}\n`);
        print?.(line);
      },
    });
  let server = await startServer().catch(async (err: unknown) => {
    await closeStream(logFile);
    throw err;
  });
  running.temporal = {
    what: 'stopping Temporal',
    run: async () => {
      await server.stop();
      await closeStream(logFile);
    },
  };
  if (options.restartableServers) {
    running.restart = {
      ...running.restart,
      temporal: async () => {
        await server.stop();
        server = await startServer();
        log.info(`Temporal dev server restarted on ${server.address}`);
      },
    };
  }
  await ensureNamespace(cliPath, server.address, config.temporal.namespace);
  log.info(`Temporal dev server on ${server.address} (${cliPath})`);
  return { temporalAddress: server.address, temporalUiUrl: server.uiUrl, namespace: config.temporal.namespace };
}

/** A well-known port if free (else a free one, said aloud), or simply a free one. */
async function choosePort(options: LocalStackOptions, wellKnown: number, who: string): Promise<number> {
  if (options.ports === 'free') return freePort();
  const { port, fellBack } = await preferredOrFreePort(wellKnown);
  if (fellBack) options.log.warn(`port ${wellKnown} is taken: ${who} listens on ${port} instead`);
  return port;
}

type StartChild = (name: string, script: string, env?: Record<string, string>) => Promise<NodeProcess>;

/** Workers and the gateways together, then the runners, which connect to the gateways. */
async function startProcesses(
  options: LocalStackOptions,
  dirs: Directories,
  services: Services,
  running: Running,
): Promise<{ gatewayUrls: string[]; start: StartChild }> {
  const endpoints = await gatewayEndpoints(options);
  const several = endpoints.length > 1;
  const stackEnv: Record<string, string> = {
    DATABASE_URL: services.databaseUrl,
    TEMPORAL_ADDRESS: services.temporalAddress,
    TEMPORAL_NAMESPACE: services.namespace,
    DORMOUSE_GATEWAY_PORT: String(endpoints[0]!.port),
    DORMOUSE_GATEWAY_URL: endpoints[0]!.url,
    DORMOUSE_WORKFLOW_BUNDLE: services.workflowBundlePath,
    // A local stack is a development stack: no tokens unless the caller sets them.
    DORMOUSE_MODE: 'development',
    ...(services.natsUrl === null ? {} : { DORMOUSE_NATS_URL: services.natsUrl }),
    ...options.env,
  };
  const start: StartChild = async (name, script, env = {}) => {
    const proc = await startNodeProcess({
      name,
      script,
      env: { ...stackEnv, ...env },
      logFile: join(dirs.logDir, `${name}.log`),
      detached: true,
      ...(options.output ? { onLine: options.output(name) } : {}),
    });
    reportUnexpectedExit(proc, running, options.log);
    return proc;
  };

  const workersReady = Array.from({ length: options.workers }, (_, i) =>
    start(`worker-${i + 1}`, WORKER_SCRIPT).then((p) => void running.workers.push(p)),
  );
  // Distinct ids for this run (a gateway's id owns its hibernating rows; DESIGN §3).
  const runId = randomBytes(2).toString('hex');
  const gatewaysReady = endpoints.map(({ port, url }, i) => {
    const name = several ? `gateway-${i + 1}` : 'gateway';
    const env: Record<string, string> = several
      ? { DORMOUSE_GATEWAY_PORT: String(port), DORMOUSE_GATEWAY_URL: url, DORMOUSE_GATEWAY_ID: `${name}-${runId}` }
      : {};
    return start(name, GATEWAY_SCRIPT, env).then((p) => void (running.gateways[i] = p));
  });
  await allSettledOrThrow([...gatewaysReady, ...workersReady]);
  options.signal?.throwIfAborted();
  const runnerScript = options.runnerScript ?? DEMO_RUNNER_SCRIPT;
  const urls = endpoints.map((e) => e.url);
  await allSettledOrThrow(
    Array.from({ length: options.runners }, (_, i) => {
      // Runner i on gateway i mod N, moving on to the others in turn if it goes away.
      const own = i % urls.length;
      const env: Record<string, string> = several
        ? {
            DORMOUSE_GATEWAY_URL: urls[own]!,
            DORMOUSE_RUNNER_GATEWAY_URLS: [...urls.slice(own), ...urls.slice(0, own)].join(','),
          }
        : {};
      return start(`runner-${i + 1}`, runnerScript, env).then((p) => void running.runners.push(p));
    }),
  );
  return { gatewayUrls: urls, start };
}

/**
 * Where each gateway listens and is reached. `free`: free ports. `well-known`: the configured
 * port and URL for the first, the next ports (same URL, its port changed) for the others; every
 * one must be free, because clients are told those URLs.
 */
async function gatewayEndpoints(options: LocalStackOptions): Promise<{ port: number; url: string }[]> {
  const { host, port, url } = options.config.gateway;
  const count = options.gateways ?? 1;
  const endpoints: { port: number; url: string }[] = [];
  for (let i = 0; i < count; i++) {
    if (options.ports === 'free') {
      const free = await freePort(host);
      endpoints.push({ port: free, url: `http://${host}:${free}` });
      continue;
    }
    const own = port + i;
    if (!(await isPortFree(own, host))) {
      const which = count === 1 ? "the gateway's port" : `gateway ${i + 1}'s port`;
      throw new Error(`${which} ${own} is in use; stop whatever holds it or set DORMOUSE_GATEWAY_PORT`);
    }
    endpoints.push({ port: own, url: i === 0 ? url : withPort(url, own) });
  }
  return endpoints;
}

/** `url` with its port replaced (and no trailing slash), e.g. http://127.0.0.1:6420 → …:6421. */
function withPort(url: string, port: number): string {
  const parsed = new URL(url);
  parsed.port = String(port);
  return parsed.href.replace(/\/$/, '');
}

function reportUnexpectedExit(proc: NodeProcess, running: Running, log: Logger): void {
  void proc.exited.then((exit) => {
    if (!running.stopping) log.warn(`${proc.name} exited (${describeExit(exit)}); its log is ${proc.logFile}`);
  });
}

/**
 * Newest first: extra processes, runners, the gateways, workers (they must still handle what the
 * runners and the gateways report while those shut down), then NATS, Temporal and Postgres. Every step is
 * bounded by the stop functions it calls.
 */
async function stopAll(running: Running, log: Logger): Promise<void> {
  running.stopping = true;
  const stopEach = (procs: readonly NodeProcess[]) => procs.map((p) => () => p.stop());
  const steps: [string, (() => Promise<unknown>)[]][] = [
    [`stopping ${running.extra.map((p) => p.name).join(', ')}`, stopEach(running.extra)],
    ['stopping runners', stopEach(running.runners)],
    [running.gateways.length > 1 ? 'stopping gateways' : 'stopping gateway', stopEach(running.gateways)],
    ['stopping workers', stopEach(running.workers)],
    ...[running.nats, running.temporal, running.postgres]
      .filter((t) => t !== undefined)
      .map((t): [string, (() => Promise<unknown>)[]] => [t.what, [() => t.run()]]),
  ];
  const errors: unknown[] = [];
  for (const [what, stops] of steps) {
    if (stops.length === 0) continue;
    log.info(what);
    for (const result of await Promise.allSettled(stops.map((stop) => stop()))) {
      if (result.status === 'rejected') {
        log.error(`${what}: ${errorMessage(result.reason)}`);
        errors.push(result.reason);
      }
    }
  }
  if (running.scratch !== undefined) {
    // Not from under a server that would not stop: its pid and files are how to find it.
    if (errors.length === 0) await rm(running.scratch, { recursive: true, force: true });
    else log.warn(`kept ${running.scratch}, as something in it may still run`);
  }
  log.info('stopped');
  if (errors.length > 0)
    throw new AggregateError(errors, `stopping the local stack failed: ${errors.map(errorMessage).join('; ')}`);
}

/** Rejects if `promise` takes longer than REMOVE_TIMEOUT_MS: a hung server must not hang stop(). */
async function bounded(promise: Promise<void>, what: string): Promise<void> {
  if (
    (await within(
      promise.then(() => true),
      REMOVE_TIMEOUT_MS,
    )) === undefined
  ) {
    throw new Error(`${what}: not done after ${REMOVE_TIMEOUT_MS} ms`);
  }
}

function closeStream(stream: WriteStream): Promise<void> {
  return new Promise((resolve) => stream.end(resolve));
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= fn());
}
