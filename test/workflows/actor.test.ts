/**
 * The actor workflow (src/workflows/actor.ts) as a table: from a given state, a signal, runner
 * events or elapsed time lead to a state (the `state` query) and to exactly these activity calls.
 * It runs on Temporal's time-skipping test server with fake activities (test/harness), so the
 * start threshold (30 s), the stop threshold (5 min), crash backoff and alarms take milliseconds.
 * The process tests (test/*.test.ts) check the same lifecycle end to end, with real runners.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import type { ActorEvent, HibernatingRequestRef } from '../../src/protocol/runner-protocol.js';
import { wakeSignal, type ActorStatus, type CrashPolicy } from '../../src/workflows/actor-api.js';
import {
  ActorGenerationKey,
  ActorKeyKey,
  ActorNameKey,
  ActorStateKey,
  RunnerIdKey,
} from '../../src/workflows/search-attributes.js';
import { runnerOf } from '../harness/fake-activities.js';
import { waitFor } from '../harness/wait.js';
import {
  startActorTestEnv,
  type ActorTestEnv,
  type ActorUnderTest,
  type CreateActorOptions,
} from '../harness/time-skipping.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

const RUNNING: ActorEvent = { kind: 'running' };
const STOPPED: ActorEvent = { kind: 'stopped', code: 'ok' };
const CRASHED: ActorEvent = { kind: 'stopped', code: 'error', message: 'boom' };

let t: ActorTestEnv;
beforeAll(async () => {
  t = await startActorTestEnv();
});
afterEach(async () => {
  await t.endActors();
});
afterAll(async () => {
  await t?.stop();
});

// --- The table --------------------------------------------------------------------------------

/** One thing that happens to the actor; the workflow has acted on it when `run` returns. */
interface Step {
  name: string;
  run(actor: ActorUnderTest): Promise<void>;
}

const wake: Step = { name: 'wake', run: (a) => a.wake() };
const sleep: Step = { name: 'sleep', run: (a) => a.sleep() };
const reschedule: Step = { name: 'reschedule', run: (a) => a.reschedule() };
const destroy: Step = { name: 'destroy', run: (a) => a.destroy() };
const capacity: Step = { name: 'capacity appears', run: (a) => a.giveCapacity() };
/** A destroy won the row lock: the allocation finds the actor destroyed (db/actors.ts allocateActor). */
const destroyedInRegistry: Step = {
  name: 'registry row destroyed',
  run: async (a) => void (a.fake.destroyed = true),
};

function event(name: string, e: ActorEvent): Step {
  return { name: `event ${name}`, run: (a) => a.events(e) };
}
/** An event with an explicit generation and index: another generation, a gap, a repeat. */
function eventAt(generation: number, index: number, name: string, e: ActorEvent): Step {
  return { name: `event ${name} (g${generation} #${index})`, run: (a) => a.eventsAt(generation, index, e) };
}
function runnerLost(runnerId: string): Step {
  return { name: `runnerLost ${runnerId}`, run: (a) => a.runnerLost(runnerId) };
}
function elapse(ms: number, name: string): Step {
  return { name: `${name} pass`, run: (a) => a.elapse(ms) };
}

const running = event('running', RUNNING);
const resting = event('resting', { kind: 'resting' });
const active = event('active', { kind: 'active' });
const stopped = event('stopped ok', STOPPED);
const crashed = event('stopped error', CRASHED);

/** How each given state is reached from a new actor (which is `starting` generation 1 on runner-1). */
const GIVEN = {
  starting: { steps: [] },
  running: { steps: [running] },
  'running, resting in place': { steps: [running, resting] },
  'stopping to sleep': { steps: [running, sleep] },
  'stopping to reschedule': { steps: [running, reschedule] },
  'stopping to destroy': { steps: [running, destroy] },
  sleeping: { steps: [running, sleep, stopped] },
  'sleeping with an alarm in 1 h': {
    steps: [
      running,
      {
        name: 'event setAlarm +1 h',
        run: async (a) => a.events({ kind: 'setAlarm', alarmTs: (await t.env.currentTimeMs()) + HOUR }),
      },
      sleep,
      stopped,
    ],
  },
  backoff: { steps: [running, crashed] },
  'allocating without capacity': { steps: [], options: { capacity: false } },
} satisfies Record<string, { steps: Step[]; options?: CreateActorOptions }>;

interface Case {
  given: keyof typeof GIVEN;
  /** Crash policy of the actor (default `restart`). */
  policy?: CrashPolicy;
  when: Step[];
  then: Partial<ActorStatus>;
  /** Every activity the workflow called during `when`, in order (see describeCall). */
  calls: string[];
}

const g1 = { generation: 1 };
const onRunner1 = { generation: 1, runnerId: runnerOf(1) };
const onRunner2 = { generation: 2, runnerId: runnerOf(2) };
const offRunner = { runnerId: null };

/** A new generation on runner-2 after leaving runner-1 (recorded at once, so gateways stop routing there). */
const restartedFromRunner = (reason: string) => [
  'recordActorState allocating g1',
  'allocateAndSnapshot g2',
  `startActor g2 ${reason} @runner-2 hibernating=0`,
];
/** A new generation when the actor was on no runner: nothing to record before allocating. */
const startedOffRunner = (reason: string) => [
  'allocateAndSnapshot g2',
  `startActor g2 ${reason} @runner-2 hibernating=0`,
];

const CASES: Case[] = [
  // starting: waits for `running` up to the start threshold
  {
    given: 'starting',
    when: [running],
    then: { state: 'running', ...onRunner1 },
    calls: ['recordActorState running g1'],
  },
  { given: 'starting', when: [elapse(29 * SECOND, '29 s')], then: { state: 'starting', ...onRunner1 }, calls: [] },
  {
    given: 'starting',
    when: [elapse(30 * SECOND, '30 s (start threshold)')],
    then: { state: 'starting', ...onRunner2 },
    calls: ['stopActor g1 stale @runner-1', ...restartedFromRunner('threshold')],
  },
  {
    given: 'starting',
    when: [eventAt(2, 0, 'running', RUNNING)],
    then: { state: 'starting', ...onRunner1 },
    calls: [],
  },
  {
    given: 'starting',
    when: [eventAt(1, 1, 'intent sleep', { kind: 'intent', intent: 'sleep' }), eventAt(1, 0, 'running', RUNNING)],
    then: { state: 'stopping', ...onRunner1 },
    calls: ['recordActorState running g1', 'stopActor g1 sleep @runner-1', 'recordActorState stopping g1'],
  },
  {
    given: 'starting',
    when: [runnerLost(runnerOf(1))],
    then: { state: 'starting', ...onRunner2 },
    calls: ['stopActor g1 lost @runner-1', ...restartedFromRunner('lost')],
  },
  { given: 'starting', when: [runnerLost('runner-9')], then: { state: 'starting', ...onRunner1 }, calls: [] },
  { given: 'starting', when: [wake], then: { state: 'starting', ...onRunner1 }, calls: [] },
  {
    given: 'starting',
    when: [crashed],
    then: { state: 'backoff', ...g1, ...offRunner, crashCount: 1 },
    calls: ['recordActorState backoff g1'],
  },
  {
    given: 'starting',
    when: [destroy, stopped],
    then: { state: 'destroyed', ...g1, ...offRunner },
    calls: ['stopActor g1 destroy @runner-1', 'recordActorState stopping g1', 'destroyActor'],
  },

  // running: waits for a request, an intent or the runner
  {
    given: 'running',
    when: [sleep],
    then: { state: 'stopping', ...onRunner1 },
    calls: ['stopActor g1 sleep @runner-1', 'recordActorState stopping g1'],
  },
  {
    given: 'running',
    when: [event('intent sleep', { kind: 'intent', intent: 'sleep' })],
    then: { state: 'stopping', ...onRunner1 },
    calls: ['stopActor g1 sleep @runner-1', 'recordActorState stopping g1'],
  },
  {
    given: 'running',
    when: [event('intent stop', { kind: 'intent', intent: 'stop' })],
    then: { state: 'stopping', ...onRunner1 },
    calls: ['stopActor g1 destroy @runner-1', 'recordActorState stopping g1'],
  },
  {
    given: 'running',
    when: [reschedule],
    then: { state: 'stopping', ...onRunner1 },
    calls: ['stopActor g1 reschedule @runner-1', 'recordActorState stopping g1'],
  },
  {
    given: 'running',
    when: [destroy, stopped],
    then: { state: 'destroyed', ...g1, ...offRunner },
    calls: ['stopActor g1 destroy @runner-1', 'recordActorState stopping g1', 'destroyActor'],
  },
  { given: 'running', when: [stopped], then: { state: 'starting', ...onRunner2 }, calls: restartedFromRunner('drain') },
  {
    given: 'running',
    when: [runnerLost(runnerOf(1))],
    then: { state: 'starting', ...onRunner2 },
    calls: ['stopActor g1 lost @runner-1', ...restartedFromRunner('lost')],
  },
  { given: 'running', when: [runnerLost('runner-9')], then: { state: 'running', ...onRunner1 }, calls: [] },
  { given: 'running', when: [wake], then: { state: 'running', ...onRunner1 }, calls: [] },
  {
    given: 'running',
    when: [eventAt(2, 0, 'stopped error', CRASHED)],
    then: { state: 'running', ...onRunner1 },
    calls: [],
  },
  {
    given: 'running',
    when: [eventAt(1, 0, 'stopped error, a seen index', CRASHED)],
    then: { state: 'running', ...onRunner1 },
    calls: [],
  },
  { given: 'running', when: [elapse(HOUR, '1 h')], then: { state: 'running', ...onRunner1 }, calls: [] },
  {
    given: 'running',
    when: [crashed],
    then: { state: 'backoff', ...g1, ...offRunner, crashCount: 1 },
    calls: ['recordActorState backoff g1'],
  },
  {
    given: 'running',
    policy: 'sleep',
    when: [crashed],
    then: { state: 'sleeping', ...g1, ...offRunner },
    calls: ['recordActorState sleeping g1'],
  },
  {
    given: 'running',
    policy: 'destroy',
    when: [crashed],
    then: { state: 'destroyed', ...g1, ...offRunner },
    calls: ['destroyActor error=boom'],
  },

  // running, resting in place (DESIGN §4.1): shown, never acted on; a rest ends on the runner
  { given: 'running', when: [resting], then: { state: 'running', resting: true, ...onRunner1 }, calls: [] },
  {
    given: 'running, resting in place',
    when: [active],
    then: { state: 'running', resting: false, ...onRunner1 },
    calls: [],
  },
  {
    given: 'running, resting in place',
    when: [wake],
    then: { state: 'running', resting: true, ...onRunner1 },
    calls: [],
  },
  {
    given: 'running, resting in place',
    when: [event('intent sleep', { kind: 'intent', intent: 'sleep' }), stopped],
    then: { state: 'sleeping', resting: false, ...g1, ...offRunner },
    calls: ['stopActor g1 sleep @runner-1', 'recordActorState stopping g1', 'recordActorState sleeping g1'],
  },
  {
    given: 'running, resting in place',
    when: [crashed],
    then: { state: 'backoff', resting: false, ...g1, ...offRunner, crashCount: 1 },
    calls: ['recordActorState backoff g1'],
  },
  {
    given: 'running, resting in place',
    when: [runnerLost(runnerOf(1))],
    then: { state: 'starting', resting: false, ...onRunner2 },
    calls: ['stopActor g1 lost @runner-1', ...restartedFromRunner('lost')],
  },

  // stopping: waits for `stopped` up to the stop threshold, then goes where the stop leads
  {
    given: 'stopping to sleep',
    when: [stopped],
    then: { state: 'sleeping', ...g1, ...offRunner },
    calls: ['recordActorState sleeping g1'],
  },
  {
    given: 'stopping to sleep',
    when: [crashed],
    then: { state: 'sleeping', ...g1, ...offRunner },
    calls: ['recordActorState sleeping g1'],
  },
  {
    given: 'stopping to sleep',
    when: [elapse(5 * MINUTE - SECOND, '4 min 59 s')],
    then: { state: 'stopping', ...onRunner1 },
    calls: [],
  },
  {
    given: 'stopping to sleep',
    when: [elapse(5 * MINUTE, '5 min (stop threshold)')],
    then: { state: 'sleeping', ...g1, ...offRunner },
    calls: ['stopActor g1 stale @runner-1', 'recordActorState sleeping g1'],
  },
  {
    given: 'stopping to sleep',
    when: [runnerLost(runnerOf(1))],
    then: { state: 'sleeping', ...g1, ...offRunner },
    calls: ['stopActor g1 lost @runner-1', 'recordActorState sleeping g1'],
  },
  { given: 'stopping to sleep', when: [runnerLost('runner-9')], then: { state: 'stopping', ...onRunner1 }, calls: [] },
  { given: 'stopping to sleep', when: [destroy], then: { state: 'stopping', ...onRunner1 }, calls: [] },
  {
    given: 'stopping to sleep',
    when: [destroy, stopped],
    then: { state: 'destroyed', ...g1, ...offRunner },
    calls: ['destroyActor'],
  },
  {
    given: 'stopping to reschedule',
    when: [stopped],
    then: { state: 'starting', ...onRunner2 },
    calls: restartedFromRunner('reschedule'),
  },
  {
    given: 'stopping to reschedule',
    when: [elapse(5 * MINUTE, '5 min (stop threshold)')],
    then: { state: 'starting', ...onRunner2 },
    calls: ['stopActor g1 stale @runner-1', ...restartedFromRunner('reschedule')],
  },
  {
    given: 'stopping to reschedule',
    when: [runnerLost(runnerOf(1))],
    then: { state: 'starting', ...onRunner2 },
    calls: ['stopActor g1 lost @runner-1', ...restartedFromRunner('reschedule')],
  },
  {
    given: 'stopping to destroy',
    when: [stopped],
    then: { state: 'destroyed', ...g1, ...offRunner },
    calls: ['destroyActor'],
  },
  {
    given: 'stopping to destroy',
    when: [elapse(5 * MINUTE, '5 min (stop threshold)')],
    then: { state: 'destroyed', ...g1 },
    calls: ['stopActor g1 stale @runner-1', 'destroyActor'],
  },
  {
    given: 'stopping to destroy',
    when: [runnerLost(runnerOf(1))],
    then: { state: 'destroyed', ...g1 },
    calls: ['stopActor g1 lost @runner-1', 'destroyActor'],
  },

  // sleeping: waits for a wake, an alarm or a destroy
  { given: 'sleeping', when: [wake], then: { state: 'starting', ...onRunner2 }, calls: startedOffRunner('wake') },
  { given: 'sleeping', when: [elapse(24 * HOUR, '24 h')], then: { state: 'sleeping', ...g1, ...offRunner }, calls: [] },
  { given: 'sleeping', when: [sleep, reschedule], then: { state: 'sleeping', ...g1, ...offRunner }, calls: [] },
  { given: 'sleeping', when: [destroy], then: { state: 'destroyed', ...g1, ...offRunner }, calls: ['destroyActor'] },
  {
    given: 'sleeping',
    when: [destroyedInRegistry, wake],
    then: { state: 'destroyed', ...g1, ...offRunner },
    calls: ['allocateAndSnapshot g2', 'destroyActor'],
  },
  {
    given: 'sleeping with an alarm in 1 h',
    when: [elapse(59 * MINUTE, '59 min')],
    then: { state: 'sleeping', ...g1 },
    calls: [],
  },
  {
    given: 'sleeping with an alarm in 1 h',
    when: [elapse(HOUR, '1 h')],
    then: { state: 'starting', ...onRunner2, alarmTs: null },
    calls: startedOffRunner('alarm'),
  },

  // backoff: waits out 2 s·2^(n-1) ±25 % (see the backoff table below for n > 1)
  { given: 'backoff', when: [elapse(SECOND, '1 s')], then: { state: 'backoff', ...g1, crashCount: 1 }, calls: [] },
  {
    given: 'backoff',
    when: [elapse(2_500, '2.5 s')],
    then: { state: 'starting', ...onRunner2, crashCount: 1 },
    calls: startedOffRunner('crash'),
  },
  { given: 'backoff', when: [wake], then: { state: 'backoff', ...g1 }, calls: [] },
  { given: 'backoff', when: [destroy], then: { state: 'destroyed', ...g1 }, calls: ['destroyActor error=boom'] },

  // allocating: the allocation waits for capacity, unless the actor is destroyed meanwhile
  {
    given: 'allocating without capacity',
    when: [capacity],
    then: { state: 'starting', ...onRunner1 },
    // The local read failed for want of a runner: the regular allocation retried until there was
    // one, then the regular snapshot read.
    calls: ['listHibernatingRequests', 'startActor g1 create @runner-1 hibernating=0'],
  },
  {
    given: 'allocating without capacity',
    when: [destroy],
    then: { state: 'destroyed', generation: 0, ...offRunner },
    calls: ['destroyActor'],
  },
];

/** Creates the actor, brings it to the given state, and checks it is there. */
async function givenActor(given: Case['given'], policy: CrashPolicy = 'restart'): Promise<ActorUnderTest> {
  const { steps, options } = { options: {}, ...GIVEN[given] };
  const actor = await t.createActor({ ...options, crashPolicy: policy });
  for (const step of steps) await step.run(actor);
  return actor;
}

describe('actor lifecycle: state × signal × timer', () => {
  for (const c of CASES) {
    const policy = c.policy ? ` (crash policy ${c.policy})` : '';
    it(`${c.given}${policy} + ${c.when.map((s) => s.name).join(' + ')} → ${c.then.state}`, async () => {
      const actor = await givenActor(c.given, c.policy);
      const mark = actor.fake.calls.length;
      for (const step of c.when) await step.run(actor);
      expect(await actor.status()).toMatchObject(c.then);
      expect(actor.callsSince(mark)).toEqual(c.calls);
    });
  }
});

// --- Beside the table ---------------------------------------------------------------------------

describe('actor lifecycle: starts', () => {
  it('a new actor allocates, snapshots and sends StartActor for generation 1, then waits 30 s for running', async () => {
    const actor = await t.createActor();
    expect(actor.callsSince(0)).toEqual(['allocateAndSnapshot g1', 'startActor g1 create @runner-1 hibernating=0']);
    expect(await actor.status()).toMatchObject({
      state: 'starting',
      generation: 1,
      runnerId: runnerOf(1),
      crashCount: 0,
      alarmTs: null,
    });
    expect((await actor.lastTimer()).durationMs).toBe(30 * SECOND);
    // Allocation and snapshot inside the workflow task, in one local activity; the send stays a
    // regular activity (DESIGN §1).
    expect(actor.fake.localAttempts).toEqual(['allocateAndSnapshot']);
  });

  it('without capacity, the one local allocation attempt hands over to the regular activity, which retries', async () => {
    const actor = await givenActor('allocating without capacity');
    await actor.elapse(10 * SECOND);
    expect(actor.fake.localAttempts).toEqual(['allocateAndSnapshot']);
    expect(actor.fake.attempts.filter((name) => name === 'allocateActor').length).toBeGreaterThan(3);
    await actor.giveCapacity();
    expect(await actor.status()).toMatchObject({ state: 'starting', generation: 1 });
    // One snapshot read for the start, however many allocation attempts it took.
    expect(actor.fake.attempts.filter((name) => name === 'listHibernatingRequests')).toHaveLength(1);
  });

  it('records its states inside the workflow task; a failed local record goes again as the regular activity', async () => {
    const actor = await givenActor('starting');
    const mark = actor.fake.calls.length;
    await actor.events(RUNNING);
    expect(actor.callsSince(mark)).toEqual(['recordActorState running g1']);
    expect(actor.fake.localAttempts).toEqual(['allocateAndSnapshot', 'recordActorState']);

    actor.fake.localRecordsFail = true;
    const attempts = actor.fake.attempts.length;
    await actor.sleep();
    expect(await actor.status()).toMatchObject({ state: 'stopping', generation: 1 });
    // The stop goes first; then one local attempt of the record, and the regular activity, which succeeds.
    expect(actor.fake.attempts.slice(attempts)).toEqual([
      'insertAndSendCommands',
      'recordActorState',
      'recordActorState',
    ]);
    expect(actor.fake.localAttempts.slice(2)).toEqual(['recordActorState']);
  });

  it('a wake from sleeping sends the snapshot it listed inside the StartActor (DESIGN §1)', async () => {
    const actor = await givenActor('sleeping');
    const snapshot: HibernatingRequestRef[] = [
      { gatewayId: 'gw-1', requestId: randomUUID() },
      { gatewayId: 'gw-2', requestId: randomUUID() },
    ];
    actor.fake.snapshot = snapshot;
    const mark = actor.fake.calls.length;
    await actor.wake();

    expect(actor.fake.calls.slice(mark).map((c) => c.name)).toEqual(['allocateAndSnapshot', 'insertAndSendCommands']);
    expect(actor.lastCall('allocateAndSnapshot')?.input).toEqual({ actorId: actor.actorId, generation: 2 });
    expect(actor.lastCall('insertAndSendCommands')?.input).toEqual({
      runnerId: runnerOf(2),
      commands: [
        {
          actorId: actor.actorId,
          generation: 2,
          idx: 0,
          command: {
            kind: 'startActor',
            actorId: actor.actorId,
            name: 'counter',
            key: `key-${actor.actorId.slice(0, 8)}`,
            input: { start: 1 },
            generation: 2,
            reason: 'wake',
            hibernatingRequests: snapshot,
          },
        },
      ],
    });
  });

  it('asleep and quiet for 10 s, continues as new; the new run wakes it as the next generation', async () => {
    const actor = await givenActor('sleeping');
    const runs = async () => {
      const run = await actor.handle.describe();
      return run.runId === run.raw.workflowExecutionInfo?.firstRunId ? 1 : 2;
    };
    await actor.elapse(9_000);
    expect(await runs()).toBe(1); // a wake this soon finds the run it fell asleep in
    await actor.elapse(2_000);
    await waitFor(async () => (await runs()) === 2, { timeoutMs: 10_000, message: 'a new run' });
    await actor.wake();
    expect(actor.lastCall('insertAndSendCommands')?.input.commands[0]).toMatchObject({
      generation: 2,
      command: { kind: 'startActor', reason: 'wake', input: { start: 1 } },
    });
  });

  it('commands are numbered per generation: the stop after a start is idx 1', async () => {
    const actor = await givenActor('running');
    await actor.sleep();
    expect(
      actor.lastCall('insertAndSendCommands')?.input.commands.map((c) => [c.generation, c.idx, c.command.kind]),
    ).toEqual([[1, 1, 'stopActor']]);
  });
});

describe('actor lifecycle: a registry that contradicts the workflow', () => {
  it('fails the run at the first InvariantViolation instead of retrying it forever', async () => {
    const actor = await givenActor('sleeping');
    actor.fake.registryBroken = true;
    const attemptsBefore = actor.fake.attempts.length;
    await actor.handle.signal(wakeSignal);
    const failure = await actor.handle.result().then(
      () => null,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    // A local activity's failure fails the run as itself; a regular one's inside an ActivityFailure.
    const failed = (failure as WorkflowFailedError).cause;
    const cause = failed instanceof ActivityFailure ? failed.cause : failed;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    expect((cause as ApplicationFailure).type).toBe('InvariantViolation');
    expect(actor.fake.attempts.slice(attemptsBefore)).toEqual(['allocateAndSnapshot']);
  });
});

describe('actor lifecycle: crash backoff 2 s·2^(n-1) ±25 %', () => {
  for (const crashes of [1, 2, 3, 4]) {
    const base = 2 * SECOND * 2 ** (crashes - 1);
    it(`after crash ${crashes} it waits ${(0.75 * base) / SECOND}–${(1.25 * base) / SECOND} s, then starts a new generation (reason crash)`, async () => {
      const actor = await givenActor('running');
      for (let n = 1; n < crashes; n++) {
        await actor.events(CRASHED);
        await actor.elapse(1.25 * 2 * SECOND * 2 ** (n - 1) + SECOND);
        await actor.events(RUNNING);
      }
      const crashedAt = await actor.now();
      await actor.events(CRASHED);
      expect(await actor.status()).toMatchObject({ state: 'backoff', generation: crashes, crashCount: crashes });

      // The workflow fixes the deadline when it takes the crash in, and starts the timer for what
      // is left of it once the backoff is recorded: the delay lies between the timer's duration
      // and that plus the server time that passed since the crash was sent.
      const timer = await actor.lastTimer();
      expect(timer.durationMs).toBeLessThanOrEqual(1.25 * base);
      expect(timer.durationMs + (timer.startedAtMs - crashedAt)).toBeGreaterThanOrEqual(0.75 * base);

      const mark = actor.fake.calls.length;
      const firesAt = timer.startedAtMs + timer.durationMs;
      await actor.elapse(firesAt - (await actor.now()) - 500);
      expect((await actor.status()).state).toBe('backoff');
      await actor.elapse(1000);
      expect(await actor.status()).toMatchObject({ state: 'starting', generation: crashes + 1, crashCount: crashes });
      const g = crashes + 1;
      expect(actor.callsSince(mark)).toEqual([
        `allocateAndSnapshot g${g}`,
        `startActor g${g} crash @runner-${g} hibernating=0`,
      ]);
    });
  }

  it('counts crashes again from 1 after 10 quiet minutes', async () => {
    const actor = await givenActor('backoff');
    await actor.elapse(3 * SECOND);
    await actor.events(RUNNING);
    await actor.elapse(10 * MINUTE);
    await actor.events(CRASHED);
    expect(await actor.status()).toMatchObject({ state: 'backoff', generation: 2, crashCount: 1 });
  });
});

describe('actor lifecycle: visibility', () => {
  it('upserts its search attributes on every state change, resting in place included (registered on the test server)', async () => {
    const actor = await givenActor('running');
    const attributes = async () => (await actor.handle.describe()).typedSearchAttributes;
    let sa = await attributes();
    expect(sa.get(ActorNameKey)).toBe('counter');
    expect(sa.get(ActorKeyKey)).toBe(`key-${actor.actorId.slice(0, 8)}`);
    expect(sa.get(ActorStateKey)).toBe('running');
    expect(sa.get(RunnerIdKey)).toBe(runnerOf(1));
    expect(sa.get(ActorGenerationKey)).toBe(1);

    await actor.events({ kind: 'resting' });
    sa = await attributes();
    expect(sa.get(ActorStateKey)).toBe('resting');
    expect(sa.get(RunnerIdKey)).toBe(runnerOf(1));
    await actor.events({ kind: 'active' });
    expect((await attributes()).get(ActorStateKey)).toBe('running');

    await actor.sleep();
    await actor.events(STOPPED);
    sa = await attributes();
    expect(sa.get(ActorStateKey)).toBe('sleeping');
    expect(sa.get(RunnerIdKey)).toBeUndefined();
    expect(sa.get(ActorGenerationKey)).toBe(1);
  });
});
