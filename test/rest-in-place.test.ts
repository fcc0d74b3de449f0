/**
 * Resting in place (issue 11, DESIGN §4.1), on real processes. An idle actor drops its instance
 * and keeps its runner, generation and connections; the first message, request, alarm, new
 * connection or client close brings it back on the same runner and generation without a new
 * start, and the workflow hears `resting` then `active` (the registry keeps saying `running`).
 * A sleep or destroy of a resting actor does not rebuild it. A burst into a resting actor
 * arrives whole, in order, once. A runner SIGKILLed while its actors rest loses them to the
 * other runner with their sockets. An uncaught exception in a handler of a woken actor is a
 * crash under the crash policy, logged, never swallowed; one in a request handler answers 500
 * and the actor keeps running.
 */
import { readFile } from 'node:fs/promises';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientCloseCode } from '../src/protocol/client-close-codes.js';
import type { EventEnvelope } from '../src/protocol/runner-protocol.js';
import { actorWorkflowId, eventsSignal, stateQuery, type ActorStatus } from '../src/workflows/actor-api.js';
import { actorRequest, createActor, getActor, waitForActor, type Api } from './harness/actors.js';
import { activityCalls, actorHistories, recordedStarts } from './harness/history.js';
import { actorsApi, type ActorView } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';

let stack: TestStack;
let api: Api;

/** Rests after 300 ms idle; never sleeps during a test. */
const RESTING = { restAfterMs: 300, sleepAfterMs: 600_000 };
/** Bounds every wait on a workflow or a registry change (a loaded two-core machine). */
const WAIT_MS = 20_000;

const runner = (name: string) => ({ name: `runner-${name}`, env: { PROBE_RUNNER_NAME: name } });

beforeAll(async () => {
  stack = await createTestStack({
    env: {
      DORMOUSE_BACKOFF_BASE_MS: '300',
      DORMOUSE_RUNNER_PING_MS: '300',
      DORMOUSE_RUNNER_LOST_MS: '2000',
      DORMOUSE_REAPER_INTERVAL_MS: '500',
    },
    runners: [runner('a'), runner('b')],
  });
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

interface ProbeView {
  starts: number;
  alarms: number;
  connects: number;
  received: { conn: string; text: string }[];
  disconnects: Record<string, number>;
  connections: string[];
  generation: number;
  runner: string;
  pid: number;
}

type RestKind = 'resting' | 'active';

const probeState = async (actorId: string): Promise<ProbeView> =>
  (await actorRequest<ProbeView>(stack.gatewayUrl, actorId, '/state')).body;
const texts = (state: ProbeView): string[] => state.received.map((r) => r.text);
const echoes = (client: TestClient): string[] => client.json<{ echo: string }>().map((m) => m.echo);
const workflow = (actorId: string) => stack.temporal.workflow.getHandle(actorWorkflowId(actorId));
const status = (actorId: string): Promise<ActorStatus> => workflow(actorId).query(stateQuery);

/** The `resting`/`active` events of one generation the workflow received, in event order, once each. */
async function restEvents(actorId: string, generation: number): Promise<RestKind[]> {
  const byIndex = new Map<number, RestKind>();
  for (const history of await actorHistories(stack.temporal, actorId))
    for (const event of history.events ?? []) {
      const signal = event.workflowExecutionSignaledEventAttributes;
      const payload = signal?.input?.payloads?.[0];
      if (signal?.signalName !== eventsSignal.name || !payload) continue;
      // A batch may come again (a resend): the index says which events are the same one.
      for (const envelope of defaultPayloadConverter.fromPayload<EventEnvelope[]>(payload)) {
        const { kind } = envelope.event;
        if (envelope.generation === generation && (kind === 'resting' || kind === 'active'))
          byIndex.set(envelope.index, kind);
      }
    }
  return [...byIndex].sort(([a], [b]) => a - b).map(([, kind]) => kind);
}

/** Waits until the workflow has received `count` events of `kind` for the generation; returns them all. */
function restEventsReach(actorId: string, generation: number, kind: RestKind, count: number): Promise<RestKind[]> {
  return waitFor(
    async () => {
      const events = await restEvents(actorId, generation);
      return events.filter((k) => k === kind).length >= count ? events : undefined;
    },
    { timeoutMs: WAIT_MS, intervalMs: 100, message: `actor ${actorId} generation ${generation}: ${count}× ${kind}` },
  );
}

/** Waits until the actor rests (its `count`th rest) and the workflow's query says so. */
async function rests(actorId: string, generation: number, count = 1): Promise<ActorStatus> {
  await restEventsReach(actorId, generation, 'resting', count);
  return waitFor(
    async () => {
      const s = await status(actorId);
      return s.resting ? s : undefined;
    },
    { timeoutMs: WAIT_MS, intervalMs: 50, message: `actor ${actorId}: the state query says resting` },
  );
}

/** Rests and wakes alternate, starting with a rest. */
function expectAlternating(events: RestKind[]): void {
  expect(events).toEqual(events.map((_, i) => (i % 2 === 0 ? 'resting' : 'active')));
}

/** Start reasons of the actor's generations, from its workflow history. */
async function startReasons(actorId: string): Promise<string[]> {
  return recordedStarts(activityCalls(await actorHistories(stack.temporal, actorId))).map((s) => s.reason);
}

/** The error messages the runners logged at error as `actor crashed` for this actor. */
async function crashesLogged(actorId: string): Promise<string[]> {
  const messages: string[] = [];
  for (const proc of stack.runners)
    for (const line of (await readFile(proc.logFile, 'utf8')).split('\n')) {
      if (!line.startsWith('{')) continue;
      const entry = JSON.parse(line) as { msg?: string; level?: number; actorId?: string; err?: { message?: string } };
      if (entry.msg === 'actor crashed' && entry.actorId === actorId && entry.level === 50)
        messages.push(entry.err?.message ?? '');
    }
  return messages;
}

/** A probe with one client that has exchanged `first`, and what the probe says about itself. */
async function probeWithClient(
  key: string,
  first: string,
  extra: { input?: object; crashPolicy?: 'restart' | 'sleep' | 'destroy' } = {},
): Promise<{ actor: ActorView; client: TestClient; before: ProbeView }> {
  const actor = await createActor(api, {
    name: 'probe',
    key,
    input: { ...RESTING, ...extra.input },
    ...(extra.crashPolicy ? { crashPolicy: extra.crashPolicy } : {}),
  });
  const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
  client.send(first);
  await client.waitForMessages(1);
  return { actor, client, before: await probeState(actor.actorId) };
}

describe('a resting actor', () => {
  it('wakes on the same runner and generation for a message, a request, an alarm and a new connection', async () => {
    const { actor, client, before } = await probeWithClient('wakes', 'one');
    const { actorId } = actor;
    const gen = before.generation;
    expect(before).toMatchObject({ starts: 1, generation: 1 });
    const placed = await waitForActor(api, actorId, (a) => a.state === 'running', 'placed', WAIT_MS);
    const same = { pid: before.pid, runner: before.runner, generation: gen, starts: 1 };

    // Resting: the query and the search attribute say so; the registry still places it.
    expect(await rests(actorId, gen, 1)).toMatchObject({ resting: true, generation: gen });
    await waitFor(
      async () => {
        const { searchAttributes } = await workflow(actorId).describe();
        return searchAttributes.ActorState?.[0] === 'resting';
      },
      { timeoutMs: WAIT_MS, intervalMs: 100, message: 'search attribute ActorState resting' },
    );
    expect(await getActor(api, actorId)).toMatchObject({ generation: gen, runnerId: placed.runnerId });

    // A message.
    client.send('two');
    await client.waitForMessages(2);
    expect(client.json()[1]).toEqual({ echo: 'two', n: 2 });
    await restEventsReach(actorId, gen, 'active', 1);

    // A request.
    await rests(actorId, gen, 2);
    expect(await probeState(actorId)).toMatchObject({ ...same, alarms: 0 });
    await restEventsReach(actorId, gen, 'active', 2);

    // An alarm, set by a request (a wake of its own) and due well after the actor rests again:
    // nothing but the alarm wakes it then.
    await rests(actorId, gen, 3);
    const alarmSet = await actorRequest(stack.gatewayUrl, actorId, '/alarm', { method: 'POST', json: { inMs: 5_000 } });
    expect(alarmSet.status).toBe(202);
    await rests(actorId, gen, 4);
    await restEventsReach(actorId, gen, 'active', 4);
    await rests(actorId, gen, 5);
    expect(await probeState(actorId)).toMatchObject({ ...same, alarms: 1 });

    // A new connection, non-hibernatable: it keeps the actor awake, so the query says active.
    await rests(actorId, gen, 6);
    const awake = await TestClient.connect(stack.gatewayUrl, actorId, '?ephemeral');
    await waitFor(async () => !(await status(actorId)).resting, {
      timeoutMs: WAIT_MS,
      intervalMs: 50,
      message: 'the state query says active while a non-hibernatable connection is open',
    });
    awake.close();
    await awake.waitForClose();
    await rests(actorId, gen, 7);

    // Seven rests and six wakes, all in place: no start but the first.
    const events = await restEvents(actorId, gen);
    expectAlternating(events);
    expect(events).toHaveLength(13);
    expect(await startReasons(actorId)).toEqual(['create']);
    expect(await getActor(api, actorId)).toMatchObject({ generation: gen, runnerId: placed.runnerId });
    const after = await probeState(actorId);
    expect(after).toMatchObject({ ...same, connects: 2, connections: before.connections });
    expect(Object.values(after.disconnects)).toEqual([1]);
    expect(texts(after)).toEqual(['one', 'two']);
    expect(echoes(client)).toEqual(['one', 'two']);
    expect(client.isClosed).toBeNull();
    client.close();
  });

  it('takes a burst whole, in order, once', async () => {
    const { actor, client, before } = await probeWithClient('burst', 'warm');
    const { actorId } = actor;
    await rests(actorId, before.generation, 1);

    const burst = Array.from({ length: 50 }, (_, i) => `b${i + 1}`);
    for (const text of burst) client.send(text);
    await client.waitForMessages(51);
    expect(client.json()).toEqual(['warm', ...burst].map((text, i) => ({ echo: text, n: i + 1 })));
    const after = await probeState(actorId);
    expect(after).toMatchObject({ pid: before.pid, generation: before.generation, starts: 1 });
    expect(texts(after)).toEqual(['warm', ...burst]);

    // The burst woke it once.
    const events = await restEventsReach(actorId, before.generation, 'active', 1);
    expectAlternating(events);
    expect(events.filter((k) => k === 'active')).toHaveLength(1);
    expect(await startReasons(actorId)).toEqual(['create']);
    client.close();
  });

  it("wakes for a client's close, to run onDisconnect once", async () => {
    const { actor, client, before } = await probeWithClient('close-wakes', 'one');
    const { actorId } = actor;
    const [connId] = before.connections;
    await rests(actorId, before.generation, 1);

    client.close();
    await client.waitForClose();
    await restEventsReach(actorId, before.generation, 'active', 1);
    const after = await probeState(actorId);
    expect(after).toMatchObject({ pid: before.pid, generation: before.generation, starts: 1, connections: [] });
    expect(after.disconnects).toEqual({ [connId!]: 1 });
    expect(await startReasons(actorId)).toEqual(['create']);
  });

  it('is not rebuilt to sleep or to be destroyed', async () => {
    const { actor, client, before } = await probeWithClient('stopped-resting', 'one');
    const { actorId } = actor;
    await rests(actorId, before.generation, 1);

    // Asleep straight from rest: the generation ends without a wake (no `active`).
    expect((await api.sleep(actorId)).status).toBe(202);
    await waitForActor(api, actorId, (a) => a.state === 'sleeping', 'asleep', WAIT_MS);
    expect(await restEvents(actorId, before.generation)).toEqual(['resting']);

    // Its socket hibernated at the gateway: the next message wakes a new generation.
    client.send('two');
    await client.waitForMessages(2);
    const woken = await probeState(actorId);
    expect(woken).toMatchObject({ generation: 2, starts: 2, connects: 1, connections: before.connections });
    expect(texts(woken)).toEqual(['one', 'two']);
    expect(await startReasons(actorId)).toEqual(['create', 'wake']);

    // Destroyed straight from rest: the workflow ends, the client hears why.
    await rests(actorId, 2, 1);
    expect((await api.destroy(actorId)).status).toBe(202);
    await waitForActor(api, actorId, (a) => a.state === 'destroyed', 'destroyed', WAIT_MS);
    expect(await restEvents(actorId, 2)).toEqual(['resting']);
    expect((await client.waitForClose()).code).toBe(ClientCloseCode.ActorDestroyed);
  });
});

/**
 * The throwing message was processed and acknowledged: it is not delivered again (no second
 * crash), and the next one continues the same socket on the new generation.
 */
async function nextMessageOnGeneration2(client: TestClient, actorId: string): Promise<void> {
  client.send('after');
  await client.waitForMessages(2);
  expect(echoes(client)).toEqual(['one', 'after']);
  const after = await probeState(actorId);
  expect(after).toMatchObject({ generation: 2, starts: 2, connects: 1, disconnects: {} });
  expect(texts(after)).toEqual(['one', 'after']);
}

/** The actor once a crash has restarted it as generation 2 (restart policy). */
function restartedAsGeneration2(actorId: string): Promise<ActorView> {
  return waitForActor(api, actorId, (a) => a.state === 'running' && a.generation === 2, 'restarted', WAIT_MS);
}

describe('an uncaught exception in a handler of a woken actor', () => {
  it('in onMessage crashes it; under the restart policy a new generation takes the next message', async () => {
    const { actor, client, before } = await probeWithClient('throws-restart', 'one');
    const { actorId } = actor;
    await rests(actorId, before.generation, 1);

    client.send('throw');
    const restarted = await restartedAsGeneration2(actorId);
    expect(restarted).toMatchObject({ crashCount: 1, lastError: 'probe throws on message' });
    expect(await crashesLogged(actorId)).toEqual(['probe throws on message']);

    await nextMessageOnGeneration2(client, actorId);
    expect(await getActor(api, actorId)).toMatchObject({ generation: 2, crashCount: 1 });
    expect(await startReasons(actorId)).toEqual(['create', 'crash']);
    expect(client.isClosed).toBeNull();
    client.close();
  });

  it('in onMessage puts it to sleep under the sleep policy; the next message wakes it', async () => {
    const { actor, client, before } = await probeWithClient('throws-sleep', 'one', { crashPolicy: 'sleep' });
    const { actorId } = actor;
    await rests(actorId, before.generation, 1);

    client.send('throw');
    const asleep = await waitForActor(api, actorId, (a) => a.state === 'sleeping', 'asleep after the crash', WAIT_MS);
    // (crashCount counts the crashes that back off: the restart policy's.)
    expect(asleep).toMatchObject({ generation: 1, lastError: 'probe throws on message' });
    expect(await crashesLogged(actorId)).toEqual(['probe throws on message']);

    await nextMessageOnGeneration2(client, actorId);
    expect(await startReasons(actorId)).toEqual(['create', 'wake']);
    client.close();
  });

  it('in onAlarm crashes it, and a new generation runs', async () => {
    const actor = await createActor(api, {
      name: 'probe',
      key: 'alarm-throws',
      input: { ...RESTING, throwOnAlarm: true },
    });
    const { actorId } = actor;
    expect(
      (await actorRequest(stack.gatewayUrl, actorId, '/alarm', { method: 'POST', json: { inMs: 5_000 } })).status,
    ).toBe(202);
    await rests(actorId, 1, 1);

    const restarted = await restartedAsGeneration2(actorId);
    expect(restarted).toMatchObject({ crashCount: 1, lastError: 'probe throws on alarm' });
    expect(await crashesLogged(actorId)).toEqual(['probe throws on alarm']);
    // The alarm was cleared before it ran: it does not fire again in the new generation.
    expect(await probeState(actorId)).toMatchObject({ generation: 2, starts: 2, alarms: 0 });
    expect((await status(actorId)).alarmTs).toBeNull();
  });

  it('in onRequest answers 500, and the actor keeps running', async () => {
    const { actor, client, before } = await probeWithClient('throws-request', 'one');
    const { actorId } = actor;
    await rests(actorId, before.generation, 1);

    const failed = await actorRequest(stack.gatewayUrl, actorId, '/throw', { method: 'POST' });
    expect(failed).toMatchObject({ status: 500, body: 'probe throws on request' });
    expect(await probeState(actorId)).toMatchObject({ pid: before.pid, generation: 1, starts: 1 });
    expect(await getActor(api, actorId)).toMatchObject({ generation: 1, crashCount: 0 });
    expect(await crashesLogged(actorId)).toEqual([]);
    client.send('two');
    await client.waitForMessages(2);
    expect(echoes(client)).toEqual(['one', 'two']);
    client.close();
  });
});

describe('a runner SIGKILLed while its actors rest', () => {
  it('loses them to the other runner with their sockets: nothing lost, nothing twice', async () => {
    const probes = await Promise.all(['k1', 'k2', 'k3', 'k4'].map((key) => probeWithClient(`killed-${key}`, 'before')));
    for (const { actor, before } of probes) await rests(actor.actorId, before.generation, 1);

    const victimName = probes[0]!.before.runner;
    const victim = stack.runners.find((r) => r.name === `runner-${victimName}`)!;
    victim.kill('SIGKILL');
    await victim.exited;
    const moved = probes.filter((p) => p.before.runner === victimName);
    const stayed = probes.filter((p) => p.before.runner !== victimName);

    // The moved ones run again elsewhere, their sockets restored from the gateway's snapshot.
    for (const { actor } of moved)
      await waitForActor(api, actor.actorId, (a) => a.state === 'running' && a.generation === 2, 'moved', WAIT_MS);
    for (const { client } of probes) {
      expect(client.isClosed).toBeNull();
      client.send('after');
    }
    await Promise.all(probes.map(({ client }) => client.waitForMessages(2)));

    for (const { actor, client, before } of moved) {
      const after = await probeState(actor.actorId);
      expect(after.runner).not.toBe(victimName);
      expect(after).toMatchObject({
        generation: 2,
        starts: 2,
        connects: 1,
        disconnects: {},
        connections: before.connections,
      });
      expect(texts(after)).toEqual(['before', 'after']);
      expect(echoes(client)).toEqual(['before', 'after']);
      const starts = recordedStarts(activityCalls(await actorHistories(stack.temporal, actor.actorId)));
      expect(starts.map((s) => [s.reason, s.snapshot.length])).toEqual([
        ['create', 0],
        ['lost', 1],
      ]);
    }
    for (const { actor, client, before } of stayed) {
      const after = await probeState(actor.actorId);
      expect(after).toMatchObject({ pid: before.pid, generation: 1, starts: 1 });
      expect(texts(after)).toEqual(['before', 'after']);
      expect(echoes(client)).toEqual(['before', 'after']);
    }
    for (const { client } of probes) {
      expect(client.isClosed).toBeNull();
      client.close();
    }
  });
});
