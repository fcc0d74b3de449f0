/**
 * A member of the worker fleet: runs actor and reaper workflows and their activities on the
 * `dormouse` task queue. Stateless; run as many as you like. `tsx src/worker.ts` (or `dormouse
 * worker`) starts one from the environment (see config.ts); tests may start one in-process with
 * fault hooks.
 */
import { Client, Connection, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import type { LogLevel, LogMetadata } from '@temporalio/common';
import { NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createActivities, type Faults } from './activities/index.js';
import type { Config } from './config.js';
import { migrate } from './db/migrate.js';
import { createPool } from './db/pool.js';
import type { Logger } from './log.js';
import { runIfEntryScript, runService } from './process-entry.js';
import { WORKFLOWS_PATH } from './workflow-bundle.js';
import { REAPER_WORKFLOW_ID, type ReaperInput } from './workflows/reaper.js';

export interface RunningWorker {
  /** Settles when the worker has stopped. */
  done: Promise<void>;
  /** Graceful: stops polling, lets running tasks finish within the grace period. */
  shutdown(): Promise<void>;
}

export async function startWorker(config: Config, log: Logger, faults?: Faults): Promise<RunningWorker> {
  if (!config.databaseUrl) throw new Error('DATABASE_URL is not set: the worker needs Postgres');
  await migrate(config.databaseUrl, log);
  const db = createPool(config.databaseUrl, { applicationName: 'dormouse-worker', log });
  const clientConnection = await Connection.connect({ address: config.temporal.address });
  const client = new Client({ connection: clientConnection, namespace: config.temporal.namespace });
  const connection = await NativeConnection.connect({ address: config.temporal.address });

  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    ...(config.worker.workflowBundle
      ? { workflowBundle: { codePath: config.worker.workflowBundle } }
      : { workflowsPath: WORKFLOWS_PATH }),
    activities: createActivities({
      db,
      client,
      config,
      log: log.child({ part: 'activities' }),
      ...(faults ? { faults } : {}),
    }),
    shutdownGraceTime: config.worker.shutdownGraceMs,
  });
  if (!config.worker.workflowBundle) log.warn('no DORMOUSE_WORKFLOW_BUNDLE: bundled the workflows at start-up');

  const done = worker.run().finally(async () => {
    await connection.close();
    await clientConnection.close();
    await db.end();
  });
  await ensureReaper(client, config);
  log.info({ taskQueue: config.temporal.taskQueue, namespace: config.temporal.namespace }, 'ready');

  return {
    done,
    async shutdown() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
    },
  };
}

/** Starts the reaper singleton unless it already runs; every worker tries, one wins. */
async function ensureReaper(client: Client, config: Config): Promise<void> {
  const input: ReaperInput = { intervalMs: config.timing.reaperIntervalMs };
  try {
    await client.workflow.start('reaperWorkflow', {
      workflowId: REAPER_WORKFLOW_ID,
      taskQueue: config.temporal.taskQueue,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      staticSummary: 'Dormouse maintenance: runner liveness, hibernating-request sweep, command trim',
    });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
}

/**
 * Installs the Temporal SDK runtime once per process, before the first worker: its logs (worker
 * state, workflow `log` calls) go into pino, so the worker writes one structured stream, and its
 * metrics are served for Prometheus when an address is given.
 */
export function installSdkRuntime(log: Logger, metricsAddress?: string): void {
  const sdk = log.child({ part: 'temporal' });
  const write = (level: LogLevel, message: string, meta?: LogMetadata) => {
    sdk[level.toLowerCase() as Lowercase<LogLevel>](meta ?? {}, message);
  };
  Runtime.install({
    logger: {
      log: write,
      trace: (message, meta) => write('TRACE', message, meta),
      debug: (message, meta) => write('DEBUG', message, meta),
      info: (message, meta) => write('INFO', message, meta),
      warn: (message, meta) => write('WARN', message, meta),
      error: (message, meta) => write('ERROR', message, meta),
    },
    ...(metricsAddress ? { telemetryOptions: { metrics: { prometheus: { bindAddress: metricsAddress } } } } : {}),
  });
  if (metricsAddress) log.info({ metricsAddress }, 'Temporal SDK metrics served on /metrics');
}

/** One worker from the environment until SIGINT or SIGTERM: `tsx src/worker.ts`, `dormouse worker`. */
export function runWorkerProcess(): Promise<number> {
  return runService('worker', async (config, log) => {
    installSdkRuntime(log, config.worker.metricsAddress);
    const worker = await startWorker(config, log);
    return { done: worker.done, stop: () => worker.shutdown() };
  });
}

runIfEntryScript(import.meta.url, runWorkerProcess);
