/**
 * `sleeping-actors`: many actors, each created, handling one message and put to sleep: what the
 * fleet of sleepers costs and how fast one of them comes back. On a stack of two workers, one
 * gateway and two runners; `--concurrency` (default 200) actors in flight at a time, each
 * `POST /actors` (a `chat` actor), `POST /actors/:id/http/messages` (its one message; it waits
 * for the actor's start) and `POST /actors/:id/sleep`.
 *
 * Four figures:
 * - total time, from the first create until every actor is `sleeping` (in Postgres), against
 *   as many bare three-activity workflows (bench/baseline.ts) with as many in flight, run first
 *   on the same server;
 * - the workers' resident memory (VmRSS of the worker processes, summed) with the actors asleep,
 *   against the same workers idle, before the first actor: mostly the sleeping actors' workflows
 *   in the workers' sticky caches, which are bounded (below), not the actors themselves;
 * - Temporal history events per actor (the mean over `--history-sample` actors, from describe),
 *   against the bare workflow's history;
 * - the wake of an actor no worker has cached (`GET /actors/:id/http/state` on a sleeping actor
 *   until the actor's own reply), against a cached wake: one actor put to sleep (untimed) and
 *   woken at once, its workflow still in its worker's cache. Interleaved, `--n` of each, after
 *   `--warmup` of each uncounted.
 *
 * "No worker has cached" is made by restarting both workers once every actor sleeps, not by
 * creating more actors than the workers' sticky caches hold: the cache's default size follows
 * the heap limit (about 2,300 workflows per worker here), so only runs far above that would
 * evict, and then only the older actors; a restart empties both caches whatever `--actors` is,
 * and the shut-down worker gives its sticky queue back, so an uncached wake's workflow task goes
 * to the normal queue and is replayed from the full history. The restarted workers warm up on
 * the probe's first wake and the warm-up iterations, which are not counted.
 *
 * The stack's environment: DORMOUSE_RUNNER_CAPACITY is `--actors`, so that however far the
 * sleeps lag behind the creates, no create waits for a free slot on a runner.
 */
import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import type { Command } from 'commander';
import pg from 'pg';
import type { LocalStack } from '../dev/local-stack.js';
import { waitFor } from '../dev/wait.js';
import { actorWorkflowId } from '../src/workflows/actor-api.js';
import {
  declareSampleFlags,
  declareStackFlags,
  figureOf,
  measureInterleaved,
  positiveInt,
  quantityOf,
  runConcurrently,
  withBenchStack,
  type BenchContext,
  type Benchmark,
  type Figure,
  type SampleFlags,
  type StackFlags,
} from './benchmark.js';
import { BASELINE_NAME, startBaseline } from './baseline.js';
import { processRss } from './inspector.js';
import { createChat, expectJson } from './cold-start.js';

interface SleepingActorsFlags extends SampleFlags, StackFlags {
  actors: number;
  concurrency: number;
  historySample: number;
}

/** One request's bound: the gateway itself gives up on a start after its wake timeout (90 s). */
const REQUEST_TIMEOUT_MS = 60_000;
/** How long the last sleeps may take once every actor has been told to sleep. */
const ALL_ASLEEP_TIMEOUT_MS = 10 * 60_000;
const MIB = 1024 * 1024;

export const sleepingActors: Benchmark<SleepingActorsFlags> = {
  name: 'sleeping-actors',
  description: 'N actors each handling a message then sleeping: total time, worker RSS, history, uncached wake',
  declareFlags(command: Command) {
    command
      .option('--actors <count>', 'actors created, messaged and put to sleep', positiveInt, 10_000)
      .option('--concurrency <count>', 'actors in flight at a time', positiveInt, 200)
      .option('--history-sample <count>', 'actors whose Temporal history is counted', positiveInt, 20);
    declareSampleFlags(command, { n: 50, warmup: 5 });
    declareStackFlags(command, { workers: 2, runners: 2 });
  },
  run(flags, context) {
    // The probe, then a distinct never-woken actor for every uncached wake.
    const needed = 1 + flags.warmup + flags.n;
    if (flags.actors < needed) throw new Error(`--actors must be at least ${needed} (1 + --warmup + --n)`);
    const env = { DORMOUSE_RUNNER_CAPACITY: String(flags.actors) };
    return withBenchStack(flags, context, (stack) => measure(stack, flags, context), env);
  },
};

async function measure(stack: LocalStack, flags: SleepingActorsFlags, context: BenchContext): Promise<Figure[]> {
  const { log, signal } = context;
  const db = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
  const connection = await Connection.connect({ address: stack.temporalAddress });
  const temporal = new Client({ connection, namespace: stack.namespace });
  const baseline = await startBaseline(stack, { executionTimeout: '10 minutes' });
  try {
    const idleRss = await workersRss(stack);
    log.info({ count: flags.actors, concurrency: flags.concurrency }, 'bare workflows');
    const bare = await runConcurrently(flags.actors, flags.concurrency, () => baseline.run(), context);
    log.info({ seconds: bare.elapsedMs / 1000 }, 'bare workflows: done');

    const keyPrefix = `sleeping-${randomBytes(4).toString('hex')}-`;
    const actorIds: string[] = [];
    log.info({ count: flags.actors, concurrency: flags.concurrency }, 'actors: create, message, sleep');
    const start = performance.now();
    await runConcurrently(
      flags.actors,
      flags.concurrency,
      async (i, stop) => void (actorIds[i] = await createMessageSleep(stack.gatewayUrl, `${keyPrefix}${i}`, stop)),
      context,
    );
    log.info({ seconds: (performance.now() - start) / 1000 }, 'every actor told to sleep; waiting for the last');
    await waitFor(async () => (await asleepCount(db, keyPrefix)) === flags.actors, {
      timeoutMs: ALL_ASLEEP_TIMEOUT_MS,
      intervalMs: 500,
      message: `${flags.actors} actors asleep`,
      signal,
    });
    const totalMs = performance.now() - start;
    log.info({ seconds: totalMs / 1000 }, 'every actor asleep');

    const rss = await workersRss(stack);
    const sample = spread(actorIds, flags.historySample);
    const events = await Promise.all(sample.map((id) => historyLength(temporal, actorWorkflowId(id))));
    const bareEvents = await bareHistoryLength(temporal);
    log.info({ idleRssMiB: idleRss / MIB, rssMiB: rss / MIB, events, bareEvents }, 'fleet asleep');

    log.info('restarting the workers: no workflow cached');
    await Promise.all(stack.processes.workers.map((worker) => worker.restart()));
    const [probe, ...sleepers] = actorIds as [string, ...string[]];
    await reach(stack.gatewayUrl, probe, signal);
    const samples = await measureInterleaved(
      (i, stop) => reach(stack.gatewayUrl, sleepers[i]!, stop),
      async (_i, stop) => {
        await putToSleep(stack.gatewayUrl, db, probe, stop);
        const wakeStart = performance.now();
        await reach(stack.gatewayUrl, probe, stop);
        return performance.now() - wakeStart;
      },
      flags,
      context,
    );

    return [
      quantityOf(
        'sleeping-actors.total-time',
        flags.actors,
        { value: totalMs / 1000, unit: 's' },
        { name: BASELINE_NAME, value: bare.elapsedMs / 1000 },
      ),
      quantityOf(
        'sleeping-actors.worker-rss',
        flags.actors,
        { value: rss / MIB, unit: 'MiB' },
        { name: 'idle-workers', value: idleRss / MIB },
      ),
      quantityOf(
        'sleeping-actors.history-events-per-actor',
        sample.length,
        { value: events.reduce((a, b) => a + b, 0) / events.length, unit: 'events' },
        { name: BASELINE_NAME, value: bareEvents },
      ),
      figureOf('sleeping-actors.uncached-wake', 'cached-wake', samples),
    ];
  } finally {
    await baseline.close();
    await connection.close();
    await db.end();
  }
}

/** One actor's life in this benchmark: created, one message handled, told to sleep. Its id. */
async function createMessageSleep(gatewayUrl: string, key: string, stop: AbortSignal): Promise<string> {
  const signal = AbortSignal.any([stop, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]);
  const actorId = await createChat(gatewayUrl, key, signal);
  await expectJson(
    await fetch(`${gatewayUrl}/actors/${actorId}/http/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ from: 'bench', text: 'hello' }),
      signal,
    }),
    201,
  );
  await expectJson(await fetch(`${gatewayUrl}/actors/${actorId}/sleep`, { method: 'POST', signal }), 202);
  return actorId;
}

/** The actor's own reply to `GET /state`, waking it first if it sleeps (the gateway does that). */
async function reach(gatewayUrl: string, actorId: string, stop: AbortSignal): Promise<void> {
  const signal = AbortSignal.any([stop, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]);
  const state = (await expectJson(await fetch(`${gatewayUrl}/actors/${actorId}/http/state`, { signal }), 200)) as {
    generation?: unknown;
  };
  if (typeof state.generation !== 'number')
    throw new Error(`GET /state answered ${JSON.stringify(state)}, not the chat actor's state`);
}

async function putToSleep(gatewayUrl: string, db: pg.Pool, actorId: string, signal: AbortSignal): Promise<void> {
  await expectJson(await fetch(`${gatewayUrl}/actors/${actorId}/sleep`, { method: 'POST', signal }), 202);
  await waitFor(
    async () =>
      (await db.query<{ state: string }>('SELECT state FROM actors WHERE actor_id = $1', [actorId])).rows[0]?.state ===
      'sleeping',
    { timeoutMs: REQUEST_TIMEOUT_MS, intervalMs: 20, message: `actor ${actorId} asleep`, signal },
  );
}

async function asleepCount(db: pg.Pool, keyPrefix: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM actors WHERE key LIKE $1 AND state = 'sleeping'",
    [`${keyPrefix}%`],
  );
  return rows[0]!.n;
}

/** The resident memory of the stack's worker processes, summed (bytes). */
async function workersRss(stack: LocalStack): Promise<number> {
  const sizes = await Promise.all(stack.processes.workers.map((worker) => processRss(worker.pid)));
  return sizes.reduce((a, b) => a + b, 0);
}

async function historyLength(temporal: Client, workflowId: string): Promise<number> {
  return (await temporal.workflow.getHandle(workflowId).describe()).historyLength;
}

/** The history of one finished bare workflow: they all have the same. */
async function bareHistoryLength(temporal: Client): Promise<number> {
  for await (const execution of temporal.workflow.list({
    query: "WorkflowType = 'baselineWorkflow' AND ExecutionStatus = 'Completed'",
    pageSize: 1,
  })) {
    return historyLength(temporal, execution.workflowId);
  }
  throw new Error('no completed baseline workflow to count the history of');
}

/** `count` items spread evenly over `items` (early, middle and late actors alike). */
function spread<T>(items: readonly T[], count: number): T[] {
  const step = items.length / Math.min(count, items.length);
  return Array.from({ length: Math.min(count, items.length) }, (_, i) => items[Math.floor(i * step)]!);
}
