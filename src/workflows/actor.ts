/**
 * The actor workflow: one per actor, id `actor/<actorId>`. It reads as the lifecycle it runs:
 *
 *   allocating ─▶ starting ─▶ running ─▶ stopping ─▶ sleeping ─▶ (wake) allocating …
 *                    │           │                      └──▶ destroyed
 *                    └── crash ──┴──▶ backoff ─▶ allocating …
 *
 * Every start of every generation, whatever its reason, goes through `startGeneration`, the one
 * function of DESIGN §1. Signal handlers only record what arrived in the memory object; the
 * main loop acts on it, so continue-as-new can carry the memory whole at any wait.
 *
 * Deterministic code only: no I/O, no Node APIs; time and randomness come from the workflow.
 */
import * as wf from '@temporalio/workflow';
import { ActivityFailure, ApplicationFailure, type ActivityOptions } from '@temporalio/common';
import type { Activities } from '../activities/index.js';
import { NON_RETRYABLE_ERROR_TYPES } from '../errors.js';
import type { StartReads } from '../activities/start.js';
import type {
  ActorEvent,
  EventEnvelope,
  HibernatingRequestRef,
  RunnerCommand,
  StartReason,
  StopReason,
} from '../protocol/runner-protocol.js';
import {
  destroySignal,
  eventsSignal,
  rescheduleSignal,
  runnerLostSignal,
  sleepSignal,
  stateQuery,
  wakeSignal,
  type ActorMemory,
  type ActorState,
  type ActorWorkflowInput,
  type ShownState,
  type StopThen,
} from './actor-api.js';
import { backoffDelayMs, nextCrashCount } from './backoff.js';
import { ActorGenerationKey, ActorStateKey, RunnerIdKey } from './search-attributes.js';

/**
 * Activities retry without limit on anything transient (Postgres or Temporal away), never on an
 * InvariantViolation (src/errors.ts): the registry contradicts this workflow's own history (the
 * row is gone, or at a later generation), and every retry would meet the same contradiction.
 * Nothing here catches that failure, so it fails the run, loudly: Failed in the UI, its message
 * in the history and the worker's log. Carrying on would act on a registry known to be wrong,
 * and no lifecycle state means "broken"; an operator mends the row and resets the workflow.
 */
const ACTIVITY_OPTIONS: ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry: {
    initialInterval: '200 milliseconds',
    backoffCoefficient: 2,
    maximumInterval: '5 seconds',
    nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES,
  },
};
// Allocation retries (without limit) while no runner has room; `NoCapacity` is its failure type.
const ALLOCATE_OPTIONS: ActivityOptions = {
  ...ACTIVITY_OPTIONS,
  retry: {
    initialInterval: '250 milliseconds',
    backoffCoefficient: 2,
    maximumInterval: '2 seconds',
    nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES,
  },
};

const acts = wf.proxyActivities<Activities>(ACTIVITY_OPTIONS);

/**
 * The start's reads (allocation and snapshot, one activity) and the state records run first as
 * local activities: in the worker, inside the workflow task, recorded as markers. A start takes
 * two workflow tasks and one activity task instead of four and three (each regular activity is
 * an activity task, then a workflow task to take its result, and the server's dispatch before
 * each), and a record none of its own. DESIGN §1 holds: the snapshot is read once, recorded, and
 * travels in the input of the send, which stays a regular activity. One local attempt only:
 * when it fails (no capacity, Postgres away) the regular activity takes over, whose retries wait
 * on the server and add nothing to the history.
 */
const local = wf.proxyLocalActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { maximumAttempts: 1 },
});

// Patches (`wf.patched`): each changes the order of the commands the workflow issues, so runs
// recorded before it replay without it (test/histories).

/** A lost runner and the stop threshold queue a stopActor to the old runner before moving on. */
const DROP_ABANDONED_GENERATION = 'drop-abandoned-generation';
/** allocateActor and listHibernatingRequests run as local activities first (`local`). */
const LOCAL_START_ACTIVITIES = 'local-start-activities';
/** listHibernatingRequests runs alongside allocateActor instead of after it. */
const CONCURRENT_START_READS = 'concurrent-start-reads';
/** Allocation and snapshot are read in one local activity (`allocateAndSnapshot`), not two. */
const ONE_START_READ = 'one-start-read';
/**
 * recordActorState runs as a local activity first: a record costs the workflow task it is made
 * in, not an activity task and another workflow task (on every start: `running`).
 */
const LOCAL_STATE_RECORDS = 'local-state-records';
/** An actor asleep for ASLEEP_QUIET_MS with a history longer than ASLEEP_HISTORY_EVENTS continues as new. */
const CONTINUE_AS_NEW_ASLEEP = 'continue-as-new-asleep';

/**
 * A sleeping actor's next wake may come to a worker that has not cached it, which must first
 * replay its whole history (issue 10: an uncached wake took 1.6–2.1 times a cached one). Once it
 * has slept quietly for a while, it continues as new: that wake replays a few events. Not at
 * once: a wake right after falling asleep would meet the new run's first task on its way. A run
 * that started asleep has fewer events than this, so it continues again only after a wake.
 */
const ASLEEP_HISTORY_EVENTS = 10;
const ASLEEP_QUIET_MS = 10_000;

/** What a start has read: its runner, and its snapshot (already read, or read on demand). */
interface ReadsForStart {
  allocation: StartReads['allocation'];
  snapshot: () => Promise<HibernatingRequestRef[]>;
}

function freshObservations(): ActorMemory['observed'] {
  return { running: false, stopped: null, intent: null, runnerLost: false };
}

function initialMemory(): ActorMemory {
  return {
    state: 'allocating',
    generation: 0,
    runnerId: null,
    nextCommandIdx: 0,
    nextEventIndex: 0,
    startReason: 'create',
    stopThen: null,
    deadline: null,
    crashCount: 0,
    lastCrashAt: null,
    lastError: null,
    alarmTs: null,
    requested: { wake: false, sleep: false, reschedule: false, destroy: false },
    observed: freshObservations(),
    earlyEvents: [],
  };
}

export async function actorWorkflow(input: ActorWorkflowInput): Promise<void> {
  const m = input.carried ?? initialMemory();
  const actor = new ActorLifecycle(input, m);
  actor.installHandlers();
  actor.publish();

  while (m.state !== 'destroyed') {
    if (continueAsNewSuggested() || actor.leavesHistory) {
      await wf.condition(wf.allHandlersFinished);
      await wf.continueAsNew<typeof actorWorkflow>({ ...input, carried: m });
    }
    await actor.step();
  }
}

/**
 * A failure the activity's retry policy would not retry (src/errors.ts). A local activity's
 * failure arrives as the ApplicationFailure itself, a regular one's as the cause of an ActivityFailure.
 */
function nonRetryable(err: unknown): boolean {
  const failure = err instanceof ActivityFailure ? err.cause : err;
  return (
    failure instanceof ApplicationFailure &&
    (failure.nonRetryable || NON_RETRYABLE_ERROR_TYPES.includes(failure.type ?? ''))
  );
}

function continueAsNewSuggested(): boolean {
  return wf.workflowInfo().continueAsNewSuggested;
}

/** Milliseconds until a workflow-clock deadline, never negative. */
function until(deadline: number | null): number {
  return deadline === null ? 0 : Math.max(0, deadline - Date.now());
}

class ActorLifecycle {
  /** Asleep and quiet: this run's history is left behind (the main loop continues as new). */
  leavesHistory = false;

  constructor(
    private readonly input: ActorWorkflowInput,
    private readonly m: ActorMemory,
  ) {}

  installHandlers(): void {
    const m = this.m;
    // A wake for an actor that is starting or running is already served; kept, it would
    // restart the actor the moment it next fell asleep.
    wf.setHandler(wakeSignal, () => {
      if (m.state !== 'starting' && m.state !== 'running') m.requested.wake = true;
    });
    wf.setHandler(sleepSignal, () => void (m.requested.sleep = true));
    wf.setHandler(rescheduleSignal, () => void (m.requested.reschedule = true));
    wf.setHandler(destroySignal, () => void (m.requested.destroy = true));
    wf.setHandler(runnerLostSignal, ({ runnerId }) => {
      if (runnerId === m.runnerId && this.onRunner()) m.observed.runnerLost = true;
    });
    wf.setHandler(eventsSignal, (batch) => this.takeEvents(batch));
    wf.setHandler(stateQuery, () => ({
      actorId: this.input.actorId,
      state: m.state,
      resting: this.shownState() === 'resting',
      generation: m.generation,
      runnerId: m.runnerId,
      crashCount: m.crashCount,
      alarmTs: m.alarmTs,
    }));
  }

  /** One step of the lifecycle from the current state; returns when the state changed or a wait was interrupted. */
  async step(): Promise<void> {
    switch (this.m.state) {
      case 'allocating':
        return this.startGeneration();
      case 'starting':
        return this.awaitRunning();
      case 'running':
        return this.whileRunning();
      case 'stopping':
        return this.awaitStopped();
      case 'sleeping':
        return this.whileSleeping();
      case 'backoff':
        return this.whileBackingOff();
      case 'destroyed':
        return;
    }
  }

  // --- The one start function (DESIGN §1) -------------------------------------------------

  /**
   * Starts the next generation: allocate a runner and snapshot the hibernating requests (side by
   * side), then queue the StartActor with that snapshot *in the activity input*, so every retry
   * of the send writes byte-for-byte the same command.
   */
  private async startGeneration(): Promise<void> {
    const m = this.m;
    if (m.requested.destroy) return this.finishDestroy();
    const generation = m.generation + 1;
    const reason = m.startReason;

    const reads = await this.readForStart(generation, reason);
    // A destroy that took the row lock first refuses the allocation (db/actors.ts allocateActor).
    if (reads === 'destroyed' || 'destroyed' in reads.allocation) return this.finishDestroy();
    const { allocation } = reads;

    m.generation = generation;
    m.runnerId = allocation.runnerId;
    m.nextCommandIdx = 0;
    m.nextEventIndex = 0;
    m.observed = freshObservations();
    m.earlyEvents = [];
    m.resting = false;
    m.requested.wake = false;
    m.requested.reschedule = false;
    this.enter('starting');

    const hibernatingRequests = await reads.snapshot();
    const n = hibernatingRequests.length;
    await this.send(
      {
        kind: 'startActor',
        actorId: this.input.actorId,
        name: this.input.name,
        key: this.input.key,
        input: this.input.input,
        generation,
        reason,
        hibernatingRequests,
      },
      `start generation ${generation} on runner ${allocation.runnerId} (${reason}) with ${n} hibernating request${n === 1 ? '' : 's'}`,
    );
    m.deadline = Date.now() + this.input.timing.startThresholdMs;
  }

  /**
   * The reads of a start: a runner for the generation and the snapshot of the hibernating
   * requests, side by side, as one local activity (ONE_START_READ): one activation takes both.
   * When that attempt fails, the regular activities take over, the snapshot read after the
   * allocation. Runs of older code read them as two local activities (CONCURRENT_START_READS),
   * or one after the other (LOCAL_START_ACTIVITIES), or as regular activities only.
   * A snapshot read with the allocation is as good as one read after it: a request that
   * hibernates after the read is offered to the running actor (H8), and one that closes is
   * closed toward it (§5).
   */
  private async readForStart(generation: number, reason: StartReason): Promise<ReadsForStart | 'destroyed'> {
    const toAllocate = { actorId: this.input.actorId, generation };
    const allocating = `allocate generation ${generation} (${reason})`;
    const toList = { actorId: this.input.actorId };
    const listing = `snapshot hibernating requests for generation ${generation}`;
    const allocateRegular = () =>
      acts.allocateActor.executeWithOptions({ ...ALLOCATE_OPTIONS, summary: allocating }, [toAllocate]);
    const listRegular = () =>
      acts.listHibernatingRequests.executeWithOptions({ ...ACTIVITY_OPTIONS, summary: listing }, [toList]);

    if (wf.patched(ONE_START_READ)) {
      return this.unlessDestroyed(() =>
        this.localThenRegular<ReadsForStart>(
          async () => {
            const both = await local.allocateAndSnapshot.executeWithOptions({ summary: `${allocating}; ${listing}` }, [
              toAllocate,
            ]);
            return { allocation: both.allocation, snapshot: () => Promise.resolve(both.hibernatingRequests) };
          },
          async () => ({ allocation: await allocateRegular(), snapshot: listRegular }),
        ),
      );
    }

    const allocated = this.unlessDestroyed(() =>
      this.localFirst(
        () => local.allocateActor.executeWithOptions({ summary: allocating }, [toAllocate]),
        allocateRegular,
      ),
    );
    const snapshot = () =>
      this.localFirst(
        () => local.listHibernatingRequests.executeWithOptions({ summary: listing }, [toList]),
        listRegular,
      );
    const early = wf.patched(CONCURRENT_START_READS) ? snapshot() : null;
    early?.catch(() => undefined); // awaited by the caller, or abandoned with a destroyed actor
    const allocation = await allocated;
    if (allocation === 'destroyed') return 'destroyed';
    return { allocation, snapshot: () => early ?? snapshot() };
  }

  // --- Waiting phases ---------------------------------------------------------------------

  private async awaitRunning(): Promise<void> {
    const m = this.m;
    const woke = await wf.condition(
      () =>
        m.observed.running ||
        m.observed.stopped !== null ||
        m.observed.runnerLost ||
        m.requested.destroy ||
        continueAsNewSuggested(),
      until(m.deadline),
      { summary: 'start threshold' },
    );
    if (m.observed.stopped) return this.onUnrequestedStop();
    if (m.observed.runnerLost) return this.moveOffLostRunner();
    if (m.observed.running) {
      m.deadline = null;
      this.enter('running');
      return this.record();
    }
    if (m.requested.destroy) return this.beginStop('destroy');
    if (!woke) {
      // The start was never reported: declare it lost, tell the runner to drop it should it
      // ever get it, and start a new generation with a fresh snapshot.
      wf.log.warn('start threshold passed without running', { generation: m.generation, runnerId: m.runnerId });
      await this.send(this.stopCommand('stale'), `drop unreported generation ${m.generation} on runner ${m.runnerId}`);
      return this.restart('threshold');
    }
  }

  private async whileRunning(): Promise<void> {
    const m = this.m;
    await wf.condition(
      () =>
        m.observed.stopped !== null ||
        m.observed.runnerLost ||
        m.observed.intent !== null ||
        m.requested.sleep ||
        m.requested.reschedule ||
        m.requested.destroy ||
        continueAsNewSuggested(),
    );
    if (m.observed.stopped) return this.onUnrequestedStop();
    if (m.observed.runnerLost) return this.moveOffLostRunner();
    if (m.requested.destroy || m.observed.intent === 'stop') return this.beginStop('destroy');
    if (m.requested.reschedule) return this.beginStop('reschedule');
    if (m.requested.sleep || m.observed.intent === 'sleep') return this.beginStop('sleep');
  }

  private async awaitStopped(): Promise<void> {
    const m = this.m;
    const woke = await wf.condition(
      () =>
        m.observed.stopped !== null ||
        m.observed.runnerLost ||
        (m.requested.destroy && m.stopThen !== 'destroy') ||
        continueAsNewSuggested(),
      until(m.deadline),
      { summary: 'stop threshold' },
    );
    // A destroy that arrives while stopping for another reason takes over: the actor is
    // stopping either way.
    if (m.requested.destroy) m.stopThen = 'destroy';
    if (woke && !m.observed.stopped && !m.observed.runnerLost) return;
    if (!woke) wf.log.warn('stop threshold passed; treating the actor as stopped', { generation: m.generation });
    if (!m.observed.stopped) await this.dropOnOldRunner(m.observed.runnerLost ? 'lost' : 'stale');

    const then = m.stopThen ?? 'sleep';
    m.stopThen = null;
    m.deadline = null;
    if (then === 'destroy') return this.finishDestroy();
    if (then === 'reschedule') return this.restart('reschedule');
    return this.sleep();
  }

  private async whileSleeping(): Promise<void> {
    const m = this.m;
    const alarmDue = () => m.alarmTs !== null && Date.now() >= m.alarmTs;
    const waitMs = m.alarmTs === null ? undefined : until(m.alarmTs);
    const predicate = () => m.requested.wake || m.requested.destroy || alarmDue() || continueAsNewSuggested();
    // The patch is asked only for a long history: asking marks the history.
    if (wf.workflowInfo().historyLength > ASLEEP_HISTORY_EVENTS && wf.patched(CONTINUE_AS_NEW_ASLEEP)) {
      const quietMs = waitMs === undefined ? ASLEEP_QUIET_MS : Math.min(waitMs, ASLEEP_QUIET_MS);
      const stirred = await wf.condition(predicate, quietMs, { summary: 'asleep: quiet before continuing as new' });
      if (!stirred && !alarmDue()) {
        this.leavesHistory = true;
        return;
      }
    } else if (waitMs === undefined) await wf.condition(predicate);
    else await wf.condition(predicate, waitMs, { summary: 'alarm' });

    m.requested.sleep = false;
    m.requested.reschedule = false;
    if (m.requested.destroy) return this.finishDestroy();
    if (m.requested.wake) return this.restart('wake');
    if (alarmDue()) {
      m.alarmTs = null;
      return this.restart('alarm');
    }
  }

  private async whileBackingOff(): Promise<void> {
    const m = this.m;
    const woke = await wf.condition(() => m.requested.destroy || continueAsNewSuggested(), until(m.deadline), {
      summary: 'crash backoff',
    });
    if (m.requested.destroy) return this.finishDestroy();
    if (!woke) {
      m.deadline = null;
      return this.restart('crash');
    }
  }

  // --- Transitions ------------------------------------------------------------------------

  /**
   * The next step starts a new generation. Leaving a runner is recorded at once, so gateways
   * stop routing to the old placement while the new one is allocated.
   */
  private async restart(reason: StartReason): Promise<void> {
    const leavesRunner = this.onRunner();
    this.m.startReason = reason;
    this.m.deadline = null;
    this.enter('allocating');
    if (leavesRunner) await this.record();
  }

  /** The runner was declared lost: it is told to drop the actor should it come back, and the actor moves. */
  private async moveOffLostRunner(): Promise<void> {
    await this.dropOnOldRunner('lost');
    return this.restart('lost');
  }

  private async beginStop(then: StopThen): Promise<void> {
    const m = this.m;
    m.stopThen = then;
    m.requested.sleep = false;
    m.requested.reschedule = false;
    m.observed.intent = null;
    m.deadline = Date.now() + this.input.timing.stopThresholdMs;
    this.enter('stopping');
    await this.send(this.stopCommand(then), `stop generation ${m.generation} on runner ${m.runnerId} (${then})`);
    await this.record();
  }

  /** The runner stopped the actor without being asked: a crash, or the runner draining. */
  private async onUnrequestedStop(): Promise<void> {
    const m = this.m;
    const stopped = m.observed.stopped!;
    if (stopped.code === 'ok') {
      wf.log.info('actor stopped by its runner; starting it elsewhere', { generation: m.generation });
      return this.restart('drain');
    }
    m.lastError = stopped.message ?? 'actor crashed';
    wf.log.warn('actor crashed', { generation: m.generation, error: m.lastError, policy: this.input.crashPolicy });
    switch (this.input.crashPolicy) {
      case 'destroy':
        return this.finishDestroy();
      case 'sleep':
        return this.sleep();
      case 'restart': {
        const now = Date.now();
        m.crashCount = nextCrashCount(m, now, this.input.timing);
        m.lastCrashAt = now;
        m.deadline = now + backoffDelayMs(m.crashCount, this.input.timing, Math.random);
        this.enter('backoff');
        return this.record();
      }
    }
  }

  private async sleep(): Promise<void> {
    this.m.requested.sleep = false;
    this.enter('sleeping');
    await this.record();
  }

  private async finishDestroy(): Promise<void> {
    await acts.destroyActor.executeWithOptions(
      { ...ACTIVITY_OPTIONS, summary: 'destroy: free the key, delete storage and hibernating requests' },
      [{ actorId: this.input.actorId, lastError: this.m.lastError }],
    );
    this.enter('destroyed');
  }

  // --- Helpers ----------------------------------------------------------------------------

  private onRunner(): boolean {
    return this.m.state === 'starting' || this.m.state === 'running' || this.m.state === 'stopping';
  }

  private stopCommand(reason: StopReason): RunnerCommand {
    return { kind: 'stopActor', actorId: this.input.actorId, generation: this.m.generation, reason };
  }

  /**
   * The workflow gives up on the current generation without its runner having reported it
   * stopped (runner lost, stop threshold): that runner is told to drop it all the same, so a
   * runner that comes back, or never went, does not keep a zombie instance with live timers.
   * Runs of older code did not send it (DROP_ABANDONED_GENERATION).
   */
  private async dropOnOldRunner(reason: 'lost' | 'stale'): Promise<void> {
    const m = this.m;
    if (!wf.patched(DROP_ABANDONED_GENERATION)) return;
    await this.send(
      this.stopCommand(reason),
      `drop abandoned generation ${m.generation} on runner ${m.runnerId} (${reason})`,
    );
  }

  /**
   * Runs of older code ran the start activities as regular activities only; since
   * LOCAL_START_ACTIVITIES, one local attempt first (`localThenRegular`).
   */
  private async localFirst<T>(runLocal: () => Promise<T>, runRegular: () => Promise<T>): Promise<T> {
    return wf.patched(LOCAL_START_ACTIVITIES) ? this.localThenRegular(runLocal, runRegular) : runRegular();
  }

  /**
   * One local attempt, then the regular activity if that attempt failed for any reason but a
   * non-retryable one; a cancellation (destroy) ends both.
   */
  private async localThenRegular<T>(runLocal: () => Promise<T>, runRegular: () => Promise<T>): Promise<T> {
    try {
      return await runLocal();
    } catch (err) {
      if (wf.isCancellation(err) || nonRetryable(err)) throw err;
      wf.log.info('local activity failed; retrying it as a regular activity', { error: String(err) });
      return runRegular();
    }
  }

  /** Queues one command for the current generation on its runner. */
  private async send(command: RunnerCommand, summary: string): Promise<void> {
    const m = this.m;
    const envelope = { actorId: this.input.actorId, generation: m.generation, idx: m.nextCommandIdx++, command };
    await acts.insertAndSendCommands.executeWithOptions({ ...ACTIVITY_OPTIONS, summary }, [
      { runnerId: m.runnerId!, commands: [envelope] },
    ]);
  }

  /** Mirrors the workflow's state into the registry, where gateways wait on it. */
  private async record(): Promise<void> {
    const m = this.m;
    const state = m.state;
    if (state === 'destroyed') return; // destroyActor records that one
    const change = {
      actorId: this.input.actorId,
      generation: m.generation,
      state,
      crashCount: m.crashCount,
      lastError: m.lastError,
    };
    const summary = `record ${state}`;
    const regular = () => acts.recordActorState.executeWithOptions({ ...ACTIVITY_OPTIONS, summary }, [change]);
    if (!wf.patched(LOCAL_STATE_RECORDS)) return regular();
    await this.localThenRegular(() => local.recordActorState.executeWithOptions({ summary }, [change]), regular);
  }

  private enter(state: ActorState): void {
    if (this.m.state !== state)
      wf.log.info('actor state', { from: this.m.state, to: state, generation: this.m.generation });
    this.m.state = state;
    // Off a runner, the actor has none: the UI's RunnerId and details say so, as the registry does.
    if (state === 'allocating' || state === 'sleeping' || state === 'backoff' || state === 'destroyed')
      this.m.runnerId = null;
    this.publish();
  }

  private shownState(): ShownState {
    return this.m.state === 'running' && this.m.resting === true ? 'resting' : this.m.state;
  }

  /** Search attributes and the UI's current details follow every state change. */
  publish(): void {
    const m = this.m;
    const shown = this.shownState();
    wf.upsertSearchAttributes([
      { key: ActorStateKey, value: shown },
      { key: RunnerIdKey, value: m.runnerId },
      { key: ActorGenerationKey, value: m.generation },
    ]);
    const lines = [
      `**${shown}** · generation ${m.generation}${m.runnerId ? ` · runner \`${m.runnerId}\`` : ''}`,
      m.crashCount > 0 ? `crashes: ${m.crashCount}${m.lastError ? ` · last error: ${m.lastError}` : ''}` : null,
      m.alarmTs !== null ? `alarm at ${new Date(m.alarmTs).toISOString()}` : null,
    ];
    wf.setCurrentDetails(lines.filter((l) => l !== null).join('\n\n'));
  }

  /**
   * Runs an activity that may wait long (allocation without capacity) and abandons it if a
   * destroy arrives meanwhile.
   */
  private async unlessDestroyed<T>(fn: () => Promise<T>): Promise<T | 'destroyed'> {
    const scope = new wf.CancellationScope();
    const work = scope.run(fn);
    const destroyed = wf.condition(() => this.m.requested.destroy).then(() => 'destroyed' as const);
    const first = await Promise.race([work, destroyed]);
    if (first !== 'destroyed') return first;
    scope.cancel();
    await work.catch(() => undefined);
    return 'destroyed';
  }

  // --- Events from the runner -------------------------------------------------------------

  /** Applies a batch in index order; other generations and seen indices are ignored. */
  private takeEvents(batch: EventEnvelope[]): void {
    const m = this.m;
    for (const envelope of batch) {
      if (envelope.generation !== m.generation || envelope.index < m.nextEventIndex) continue;
      if (!m.earlyEvents.some((e) => e.index === envelope.index)) m.earlyEvents.push(envelope);
    }
    m.earlyEvents.sort((a, b) => a.index - b.index);
    while (m.earlyEvents[0]?.index === m.nextEventIndex) {
      this.apply(m.earlyEvents.shift()!.event);
      m.nextEventIndex++;
    }
  }

  private apply(event: ActorEvent): void {
    const m = this.m;
    switch (event.kind) {
      case 'running':
        m.observed.running = true;
        return;
      case 'stopped':
        m.observed.stopped =
          event.message === undefined ? { code: event.code } : { code: event.code, message: event.message };
        return;
      case 'intent':
        m.observed.intent = event.intent;
        return;
      case 'setAlarm':
        m.alarmTs = event.alarmTs;
        this.publish();
        return;
      // Shown, never waited on: a resting actor wakes on its runner without the workflow.
      // (Runs of older code never got these events, so their command order is unchanged.)
      case 'resting':
      case 'active':
        m.resting = event.kind === 'resting';
        this.publish();
        return;
    }
  }
}
