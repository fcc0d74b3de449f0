/**
 * Hibernatable WebSockets when processes die: a runner SIGKILLed while a socket is active, and
 * again while it hibernates, and a runner that dies between persisting a message and
 * acknowledging it. Nothing acknowledged is lost; nothing is processed twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { actorRequest, createActor, waitForActor, type Api } from './harness/actors.js';
import { activityCalls, actorHistories, recordHistories, recordedStarts } from './harness/history.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { TestClient } from './harness/ws-client.js';

let stack: TestStack;
let api: Api;

const DIE_ON = 'die after persisting me';
const runner = (name: string) => ({
  name: `runner-${name}`,
  env: { PROBE_RUNNER_NAME: name, PROBE_DIE_AFTER_PERSIST: DIE_ON },
});

beforeAll(async () => {
  stack = await createTestStack({
    env: { DORMOUSE_RUNNER_PING_MS: '300', DORMOUSE_RUNNER_LOST_MS: '2000', DORMOUSE_REAPER_INTERVAL_MS: '500' },
    runners: [runner('a'), runner('b')],
  });
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

type ProbeState = {
  received: { conn: string; text: string }[];
  disconnects: Record<string, number>;
  connections: string[];
  connects: number;
  generation: number;
  runner: string;
};

const probeState = async (actorId: string) =>
  (await actorRequest<ProbeState>(stack.gatewayUrl, actorId, '/state')).body;
const runnerNamed = (name: string) => stack.runners.find((r) => r.name === `runner-${name}`)!;
const texts = (state: ProbeState) => state.received.map((r) => r.text);

async function kill(name: string): Promise<void> {
  const victim = runnerNamed(name);
  victim.kill('SIGKILL');
  await victim.exited;
}

describe('a runner killed with SIGKILL', () => {
  it('loses neither an active socket nor a hibernating one', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'survivor', input: { sleepAfterMs: 60_000 } });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('m1');
    client.send('m2');
    await client.waitForMessages(2);
    const first = await probeState(actor.actorId);

    // Active: its host dies; a message sent meanwhile waits at the gateway and is delivered once
    // the actor runs again on the other runner, with the connection restored.
    await kill(first.runner);
    client.send('m3');
    await client.waitForMessages(3);
    const moved = await probeState(actor.actorId);
    expect(moved.runner).not.toBe(first.runner);
    expect(moved.generation).toBe(2);
    expect(texts(moved)).toEqual(['m1', 'm2', 'm3']);

    // Hibernating: the actor sleeps, its last host dies, a fresh runner comes up; the next
    // message wakes the actor there, with the connection restored once more.
    await stack.startRunner(runner('c'));
    expect((await api.sleep(actor.actorId)).status).toBe(202);
    await waitForActor(api, actor.actorId, (a) => a.state === 'sleeping', 'asleep');
    await kill(moved.runner);
    client.send('m4');
    await client.waitForMessages(4);

    const last = await probeState(actor.actorId);
    expect(last).toMatchObject({
      runner: 'c',
      generation: 3,
      connects: 1,
      disconnects: {},
      connections: [moved.connections[0]],
    });
    expect(texts(last)).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect(client.json<{ echo: string }>().map((m) => m.echo)).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect(client.isClosed).toBeNull();
    const starts = recordedStarts(activityCalls(await actorHistories(stack.temporal, actor.actorId)));
    expect(starts.map((s) => s.reason)).toEqual(['create', 'lost', 'wake']);
    expect(starts.slice(1).map((s) => s.snapshot.length)).toEqual([1, 1]);
    client.close();
    await recordHistories(stack.temporal, actor.actorId, 'ws-runner-lost');
  });
});

describe('a runner that dies between persisting a message and acknowledging it', () => {
  it('loses nothing and doubles nothing', async () => {
    // Two live runners: the one that dies, and the one the actor moves to.
    await stack.startRunner(runner('d'));
    const actor = await createActor(api, {
      name: 'probe',
      key: 'persisted-not-acked',
      input: { sleepAfterMs: 60_000 },
    });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('before');
    await client.waitForMessages(1);
    const host = (await probeState(actor.actorId)).runner;

    // The runner persists this message (state and index), then dies before acknowledging it:
    // the gateway still holds it and resends it to the next generation, which must drop it.
    client.send(DIE_ON);
    await runnerNamed(host).exited;
    client.send('after');
    await waitForActor(
      api,
      actor.actorId,
      (a) => a.state === 'running' && a.generation === 2,
      'running elsewhere',
      20_000,
    );
    const state = await probeState(actor.actorId);
    expect(texts(state)).toEqual(['before', DIE_ON, 'after']);

    // The echo of the persisted message was in the outbox with it (H9): the next host sends it;
    // no echo comes twice.
    await client.waitForMessages(3);
    expect(client.json<{ echo: string }>().map((m) => m.echo)).toEqual(['before', DIE_ON, 'after']);
    client.close();
  });
});
