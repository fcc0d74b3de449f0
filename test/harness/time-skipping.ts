/**
 * The actor workflow on Temporal's time-skipping test server, for the workflow unit tests
 * (test/workflows): the real workflow code, bundled as workers bundle it, in an in-process Worker
 * whose activities are fakes (fake-activities.ts). Timers take no real time: `elapse()` moves the
 * server's clock; between calls the clock is locked and runs at real speed.
 *
 *   const env = await startActorTestEnv();
 *   afterAll(() => env.stop());
 *   const actor = await env.createActor({ crashPolicy: 'sleep' });
 *
 * Two behaviours of the test server (1.38.0) shape this harness: it does not skip time while an
 * activity runs, so an allocation without capacity fails and is retried (as the real one does)
 * rather than hang; and an activity that ends after its workflow has ended keeps it from skipping
 * time for good, so actors are settled before they are terminated and the fake `destroyActor`
 * lets an abandoned allocation attempt end first.
 *
 * Needs the test server binary (dev/temporal-test-server.ts, installed by postinstall); nothing is
 * downloaded here. Independent of the process tests' dev server and Postgres.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import type { SearchAttributeType } from '@temporalio/common';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes.js';
import type { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { resolveTemporalTestServer } from '../../dev/temporal-test-server.js';
import { loadConfig, type Config } from '../../src/config.js';
import type { Actor } from '../../src/db/actors.js';
import { createLogger } from '../../src/log.js';
import type { ActorEvent, HibernatingRequestRef } from '../../src/protocol/runner-protocol.js';
import { startActorWorkflow } from '../../src/temporal-client.js';
import { installSdkRuntime } from '../../src/worker.js';
import { writeWorkflowBundle } from '../../src/workflow-bundle.js';
import {
  actorWorkflowId,
  destroySignal,
  eventsSignal,
  rescheduleSignal,
  runnerLostSignal,
  sleepSignal,
  stateQuery,
  wakeSignal,
  type ActorStatus,
  type CrashPolicy,
} from '../../src/workflows/actor-api.js';
import { ACTOR_SEARCH_ATTRIBUTES } from '../../src/workflows/search-attributes.js';
import { waitFor } from './wait.js';
import { describeCall, FakeActivities, type ActivityCall, type FakeActor } from './fake-activities.js';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

const TASK_QUEUE = 'dormouse-workflow-tests';
/** Real time a workflow gets to act on a signal or timer (it takes milliseconds). */
const SETTLE_TIMEOUT_MS = 10_000;
const SETTLE_POLL_MS = 10;
const ALLOCATE_MAX_RETRY_INTERVAL_MS = 2_000;

export interface ActorTestEnv {
  env: TestWorkflowEnvironment;
  /** Starts an actor workflow as the gateway does, with the production timing (DESIGN §7). */
  createActor(options?: CreateActorOptions): Promise<ActorUnderTest>;
  /**
   * Terminates the actors still running. Call it after each test: the clock is the server's, so
   * a live actor's timers would fire (and its activities run) in every later test's `elapse()`.
   */
  endActors(): Promise<void>;
  stop(): Promise<void>;
}

export interface CreateActorOptions {
  crashPolicy?: CrashPolicy;
  /** False: allocation fails with `NoCapacity` (and is retried) until `giveCapacity()`. */
  capacity?: boolean;
  snapshot?: HibernatingRequestRef[];
}

export async function startActorTestEnv(): Promise<ActorTestEnv> {
  const serverPath = await resolveTemporalTestServer({ install: false });
  // The SDK's own logs (worker state, workflow `log` calls) only when something is wrong.
  installSdkRuntime(createLogger('workflow-test', 'error'));
  const scratch = await mkdtemp(join(tmpdir(), 'dormouse-workflow-test-'));
  const cleanups: (() => Promise<void>)[] = [() => rm(scratch, { recursive: true, force: true })];
  const stop = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  };
  try {
    const [env, bundlePath] = await Promise.all([
      TestWorkflowEnvironment.createTimeSkipping({
        server: { executable: { type: 'existing-path', path: serverPath } },
      }),
      writeWorkflowBundle(join(scratch, 'workflow-bundle.js')),
    ]);
    cleanups.push(() => env.teardown());
    await registerSearchAttributes(env);

    const config = loadConfig({ DORMOUSE_TASK_QUEUE: TASK_QUEUE, TEMPORAL_NAMESPACE: namespaceOf(env) });
    const fakes = new FakeActivities();
    const worker = await Worker.create({
      connection: env.nativeConnection,
      namespace: namespaceOf(env),
      taskQueue: TASK_QUEUE,
      workflowBundle: { codePath: bundlePath },
      activities: fakes.activities,
    });
    const running = worker.run();
    cleanups.push(async () => {
      worker.shutdown();
      await running;
    });

    const live: ActorUnderTest[] = [];
    const endActors = async (): Promise<void> => {
      for (const actor of live.splice(0)) await actor.terminate();
    };
    cleanups.push(endActors);
    return {
      env,
      async createActor(options = {}) {
        const actor = await ActorUnderTest.start(env, fakes, config, options);
        live.push(actor);
        return actor;
      },
      endActors,
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

function namespaceOf(env: TestWorkflowEnvironment): string {
  return env.namespace ?? 'default';
}

/**
 * The workflow upserts ActorName, ActorKey, ActorState, RunnerId and ActorGeneration; a server
 * that does not know them rejects the start ("search attribute ActorState is not defined"). The
 * test server cannot list search attributes (ListSearchAttributes is unimplemented) but
 * registers them through the operator service, as the CLI does on the dev server.
 */
async function registerSearchAttributes(env: TestWorkflowEnvironment): Promise<void> {
  await env.connection.operatorService.addSearchAttributes({
    namespace: namespaceOf(env),
    searchAttributes: Object.fromEntries(ACTOR_SEARCH_ATTRIBUTES.map((key) => [key.name, indexedValueType(key.type)])),
  });
}

function indexedValueType(type: SearchAttributeType): temporal.api.enums.v1.IndexedValueType {
  const encoded = encodeSearchAttributeIndexedValueType(type);
  if (encoded === undefined) throw new Error(`no indexed value type for search attribute type ${type}`);
  return encoded;
}

/** One actor workflow under test, with its fake world; every action returns once the workflow has acted on it. */
export class ActorUnderTest {
  /** Next event index per generation, as a runner numbers its events. */
  private readonly nextIndex = new Map<number, number>();

  private constructor(
    private readonly env: TestWorkflowEnvironment,
    readonly actorId: string,
    readonly handle: WorkflowHandle,
    readonly fake: FakeActor,
  ) {}

  static async start(
    env: TestWorkflowEnvironment,
    fakes: FakeActivities,
    config: Config,
    options: CreateActorOptions,
  ): Promise<ActorUnderTest> {
    const actorId = randomUUID();
    const fake = fakes.actor(actorId);
    fake.capacity = options.capacity ?? true;
    fake.snapshot = options.snapshot ?? [];
    const record: Actor = {
      actorId,
      name: 'counter',
      key: `key-${actorId.slice(0, 8)}`,
      pool: 'default',
      input: { start: 1 },
      crashPolicy: options.crashPolicy ?? 'restart',
      state: 'allocating',
      generation: 0,
      runnerId: null,
      crashCount: 0,
      lastError: null,
      createdAt: new Date().toISOString(),
      destroyedAt: null,
    };
    // The gateway's start, with its options and initial search attributes.
    await startActorWorkflow(env.client, config, record);
    const actor = new ActorUnderTest(env, actorId, env.client.workflow.getHandle(actorWorkflowId(actorId)), fake);
    await actor.settle();
    return actor;
  }

  status(): Promise<ActorStatus> {
    return this.handle.query(stateQuery);
  }

  /** Calls made from `from` on (an index into `fake.calls`), one line each. */
  callsSince(from: number): string[] {
    return this.fake.calls.slice(from).map(describeCall);
  }

  /** The last call of that activity, typed. */
  lastCall<N extends ActivityCall['name']>(name: N): Extract<ActivityCall, { name: N }> | undefined {
    return this.fake.calls.findLast((c): c is Extract<ActivityCall, { name: N }> => c.name === name);
  }

  async wake(): Promise<void> {
    await this.signalAndSettle(() => this.handle.signal(wakeSignal));
  }

  async sleep(): Promise<void> {
    await this.signalAndSettle(() => this.handle.signal(sleepSignal));
  }

  async reschedule(): Promise<void> {
    await this.signalAndSettle(() => this.handle.signal(rescheduleSignal));
  }

  async destroy(): Promise<void> {
    await this.signalAndSettle(() => this.handle.signal(destroySignal));
  }

  async runnerLost(runnerId: string): Promise<void> {
    await this.signalAndSettle(() => this.handle.signal(runnerLostSignal, { runnerId }));
  }

  /** Events from the runner of the current generation, indexed as that runner would. */
  async events(...events: ActorEvent[]): Promise<void> {
    const { generation } = await this.status();
    const first = this.nextIndex.get(generation) ?? 0;
    this.nextIndex.set(generation, first + events.length);
    await this.eventsAt(generation, first, ...events);
  }

  /** Events with an explicit generation and first index (other generations, gaps, repeats). */
  async eventsAt(generation: number, firstIndex: number, ...events: ActorEvent[]): Promise<void> {
    const batch = events.map((event, i) => ({ actorId: this.actorId, generation, index: firstIndex + i, event }));
    await this.signalAndSettle(() => this.handle.signal(eventsSignal, batch));
  }

  /** Moves the server clock on by `ms`, firing the timers due meanwhile. */
  async elapse(ms: number): Promise<void> {
    await this.env.sleep(ms);
    await this.settle(await this.now());
  }

  /**
   * Capacity appears: the allocation succeeds at its next attempt, which comes within the
   * activity's longest retry interval (2 s, the workflow's ALLOCATE_OPTIONS).
   */
  async giveCapacity(): Promise<void> {
    this.fake.capacity = true;
    await this.elapse(ALLOCATE_MAX_RETRY_INTERVAL_MS);
  }

  /** The last timer the workflow started (a condition's timeout): its duration, and when (server time) it started. */
  async lastTimer(): Promise<{ durationMs: number; startedAtMs: number }> {
    const started = (await this.history()).findLast((e) => e.timerStartedEventAttributes);
    if (!started) throw new Error(`actor ${this.actorId} has started no timer`);
    return {
      durationMs: msOf(started.timerStartedEventAttributes?.startToFireTimeout),
      startedAtMs: msOf(started.eventTime),
    };
  }

  /** The server's clock, in ms since the epoch. */
  now(): Promise<number> {
    return this.env.currentTimeMs();
  }

  /**
   * Ends the workflow if it still runs, so its timers do not fire in later tests' elapsed time.
   * Only once no activity runs (see the top of this file).
   */
  async terminate(): Promise<void> {
    await this.settle().catch(() => undefined);
    const { status } = await this.handle.describe();
    if (status.name === 'RUNNING') await this.handle.terminate('test over');
  }

  private async signalAndSettle(send: () => Promise<void>): Promise<void> {
    await send();
    await this.settle();
  }

  /**
   * Waits until the workflow has acted on everything it was sent and every timer due by `dueBy`
   * (server time): no workflow task outstanding, no due timer unfired, and no activity open
   * except an allocation retrying while the fakes give no capacity. History is read before the
   * activities' details, so an activity closing in between is still seen as open. A failed
   * workflow task (a bug, nondeterminism) fails the wait at once, with its message.
   */
  async settle(dueBy?: number): Promise<void> {
    const broken = new AbortController();
    await waitFor(
      async () => {
        const events = await this.history();
        if (events.some(isClose)) return true;
        const failed = events.findLast((e) => e.workflowTaskFailedEventAttributes)?.workflowTaskFailedEventAttributes;
        if (failed)
          broken.abort(
            new Error(`actor ${this.actorId}: workflow task failed: ${failed.failure?.message ?? 'no message'}`),
          );
        if (workflowTaskPending(events) || (dueBy !== undefined && timerDue(events, dueBy))) return false;
        const open = openActivities(events);
        if (open.size === 0) return true;
        const pending = (await this.handle.describe()).raw.pendingActivities ?? [];
        return pending.length === open.size && pending.every((activity) => this.waitsForCapacity(activity));
      },
      {
        timeoutMs: SETTLE_TIMEOUT_MS,
        intervalMs: SETTLE_POLL_MS,
        message: `actor ${this.actorId} settles`,
        signal: broken.signal,
      },
    );
  }

  /** An allocation that failed for want of capacity (so its call is recorded) and will fail again until the test gives some. */
  private waitsForCapacity(activity: temporal.api.workflow.v1.IPendingActivityInfo): boolean {
    return activity.activityType?.name === 'allocateActor' && !this.fake.capacity && (activity.attempt ?? 1) > 1;
  }

  private async history(): Promise<HistoryEvent[]> {
    return (await this.handle.fetchHistory()).events ?? [];
  }
}

function isClose(e: HistoryEvent): boolean {
  return Boolean(
    e.workflowExecutionCompletedEventAttributes ||
    e.workflowExecutionFailedEventAttributes ||
    e.workflowExecutionTerminatedEventAttributes ||
    e.workflowExecutionContinuedAsNewEventAttributes ||
    e.workflowExecutionTimedOutEventAttributes ||
    e.workflowExecutionCanceledEventAttributes,
  );
}

function workflowTaskPending(events: HistoryEvent[]): boolean {
  const scheduled = events.findLastIndex((e) => e.workflowTaskScheduledEventAttributes);
  const completed = events.findLastIndex((e) => e.workflowTaskCompletedEventAttributes);
  return scheduled > completed;
}

/** A timer started and neither fired nor cancelled, due at or before `dueBy`. */
function timerDue(events: HistoryEvent[], dueBy: number): boolean {
  const open = new Map<string, number>();
  for (const e of events) {
    const started = e.timerStartedEventAttributes;
    if (started?.timerId) open.set(started.timerId, msOf(e.eventTime) + msOf(started.startToFireTimeout));
    const closed = e.timerFiredEventAttributes ?? e.timerCanceledEventAttributes;
    if (closed?.timerId) open.delete(closed.timerId);
  }
  return [...open.values()].some((at) => at <= dueBy);
}

/** Scheduled activities without a closing event, by scheduled event id. */
function openActivities(events: HistoryEvent[]): Set<number> {
  const open = new Set<number>();
  for (const e of events) {
    if (e.activityTaskScheduledEventAttributes) open.add(Number(e.eventId));
    const closed =
      e.activityTaskCompletedEventAttributes ??
      e.activityTaskFailedEventAttributes ??
      e.activityTaskTimedOutEventAttributes ??
      e.activityTaskCanceledEventAttributes;
    if (closed) open.delete(Number(closed.scheduledEventId));
  }
  return open;
}

/** A protobuf Timestamp or Duration in milliseconds. */
function msOf(value: { seconds?: unknown; nanos?: number | null } | null | undefined): number {
  return Number(value?.seconds ?? 0) * 1000 + Math.round((value?.nanos ?? 0) / 1e6);
}
