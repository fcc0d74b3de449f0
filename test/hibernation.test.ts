/**
 * Hibernatable WebSockets (DESIGN §5) on real sockets and processes: a client's WebSocket stays
 * open while its actor sleeps, and every message arrives once, in order.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { actorWorkflowId } from '../src/workflows/actor-api.js';
import { ClientCloseCode } from '../src/protocol/client-close-codes.js';
import { actorRequest, createActor, waitForActor, type Api } from './harness/actors.js';
import { activityCalls, actorHistories, recordHistories, recordedStarts } from './harness/history.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';

let stack: TestStack;
let api: Api;

const PENDING_FRAMES = 30;

beforeAll(async () => {
  stack = await createTestStack({
    env: { DORMOUSE_PENDING_FRAMES: String(PENDING_FRAMES), DORMOUSE_WAKE_TIMEOUT_MS: '8000' },
  });
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

type ProbeState = {
  starts: number;
  connects: number;
  received: { conn: string; text: string }[];
  disconnects: Record<string, number>;
  connections: string[];
  generation: number;
};

const probeState = async (actorId: string) =>
  (await actorRequest<ProbeState>(stack.gatewayUrl, actorId, '/state')).body;
const sleepNow = async (actorId: string) => {
  expect((await api.sleep(actorId)).status).toBe(202);
  return waitForActor(api, actorId, (a) => a.state === 'sleeping', 'asleep');
};
const rows = async (actorId: string) =>
  (
    await stack.db.query<{ request_id: string }>('SELECT request_id FROM hibernating_requests WHERE actor_id = $1', [
      actorId,
    ])
  ).rows.map((r) => r.request_id);

describe('a hibernatable WebSocket', () => {
  it('stays open through idle sleep; the next message wakes the actor and seq continues', async () => {
    const room = await createActor(api, { name: 'chat', key: 'sleepy-room', input: { sleepAfterMs: 500 } });
    const ann = await TestClient.connect(stack.gatewayUrl, room.actorId, '?name=ann');
    ann.send('one');
    ann.send('two');
    await ann.waitForMessages(2);
    await waitForActor(api, room.actorId, (a) => a.state === 'sleeping', 'asleep while the socket is open');
    expect(ann.isClosed).toBeNull();

    ann.send('three');
    await ann.waitForMessages(3);
    expect(ann.json()).toEqual([
      { seq: 1, from: 'ann', text: 'one' },
      { seq: 2, from: 'ann', text: 'two' },
      { seq: 3, from: 'ann', text: 'three' },
    ]);
    const state = (
      await actorRequest<{ seq: number; connections: number; generation: number }>(
        stack.gatewayUrl,
        room.actorId,
        '/state',
      )
    ).body;
    expect(state).toEqual({ seq: 3, connections: 1, generation: 2 });
    const starts = recordedStarts(activityCalls(await actorHistories(stack.temporal, room.actorId)));
    expect(starts.map((s) => s.reason)).toEqual(['create', 'wake']);
    expect(starts[1]!.snapshot).toHaveLength(1);
    ann.close();
    await recordHistories(stack.temporal, room.actorId, 'ws-sleep-wake');
  });

  it('wakes for every sleep, however quickly one follows another', async () => {
    const room = await createActor(api, { name: 'chat', key: 'restless-room', input: { sleepAfterMs: 600_000 } });
    const client = await TestClient.connect(stack.gatewayUrl, room.actorId);
    for (let round = 1; round <= 4; round++) {
      await sleepNow(room.actorId);
      client.send(`round ${round}`);
      await client.waitForMessages(round, 10_000);
    }
    expect(client.json<{ seq: number }>().map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    client.close();
  });

  it('answers pings at the gateway without waking the actor', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'pinged' });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('hello');
    await client.waitForMessages(1);
    await sleepNow(actor.actorId);
    const pong = new Promise<void>((resolve) => client.ws.once('pong', () => resolve()));
    client.ws.ping();
    await pong;
    expect((await api.get(actor.actorId)).body).toMatchObject({ actor: { state: 'sleeping', generation: 1 } });
    client.close();
  });

  it('tells the actor of a close during hibernation exactly once, and the row goes', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'closed-asleep' });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('hi');
    await client.waitForMessages(1);
    const [requestId] = await rows(actor.actorId);
    expect(requestId).toBeDefined();
    await sleepNow(actor.actorId);

    client.close(1000, 'bye');
    await waitFor(async () => (await rows(actor.actorId)).length === 0, { timeoutMs: 5_000, message: 'row deleted' });
    // The close wakes the actor, whose start reports the disconnect.
    await waitForActor(api, actor.actorId, (a) => a.state === 'running' && a.generation === 2, 'woken by the close');
    await sleepNow(actor.actorId);
    await api.wake(actor.actorId);
    await waitForActor(api, actor.actorId, (a) => a.state === 'running' && a.generation === 3, 'woken again');
    const state = await probeState(actor.actorId);
    expect(state.disconnects).toEqual({ [requestId!]: 1 });
    expect(state.connections).toEqual([]);
  });

  it('deletes the row of an active close, and the next snapshot does not hold it', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'active-close' });
    const a = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    const b = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    a.send('a1');
    b.send('b1');
    await a.waitForMessages(1);
    await b.waitForMessages(1);
    const before = await rows(actor.actorId);
    expect(before).toHaveLength(2);
    const stateBefore = await probeState(actor.actorId);
    const [idA, idB] = [
      stateBefore.received.find((r) => r.text === 'a1')!.conn,
      stateBefore.received.find((r) => r.text === 'b1')!.conn,
    ];

    a.close();
    await waitFor(async () => (await rows(actor.actorId)).join() === idB, {
      timeoutMs: 5_000,
      message: "only b's row left",
    });
    await waitFor(async () => (await probeState(actor.actorId)).disconnects[idA] === 1, {
      timeoutMs: 5_000,
      message: 'the actor saw a leave',
    });

    await sleepNow(actor.actorId);
    b.send('b2');
    await b.waitForMessages(2);
    const starts = recordedStarts(activityCalls(await actorHistories(stack.temporal, actor.actorId)));
    expect(starts.at(-1)!.snapshot.map((r) => r.requestId)).toEqual([idB]);
    const after = await probeState(actor.actorId);
    expect(after.disconnects).toEqual({ [idA]: 1 });
    expect(after.connections).toEqual([idB]);
    b.close();
  });

  it('is restored when opened just before its actor stops (H1)', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'opened-late' });
    await waitForActor(api, actor.actorId, (a) => a.state === 'running', 'running');
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    // The row exists as soon as the actor accepts, not on a later heartbeat tick (T/2 = 45 s).
    const [requestId] = await waitFor(
      async () => ((await rows(actor.actorId)).length === 1 ? rows(actor.actorId) : undefined),
      {
        timeoutMs: 2_000,
        intervalMs: 10,
        message: 'row inserted on accept',
      },
    );
    await sleepNow(actor.actorId);
    client.send('after the stop');
    await client.waitForMessages(1);

    // Restored from the snapshot, not offered again: the open handler ran once.
    const starts = recordedStarts(activityCalls(await actorHistories(stack.temporal, actor.actorId)));
    expect(starts[1]!.snapshot.map((r) => r.requestId)).toEqual([requestId]);
    const state = await probeState(actor.actorId);
    expect(state.connects).toBe(1);
    expect(state.disconnects).toEqual({});
    expect(state.received.map((r) => r.text)).toEqual(['after the stop']);
    expect(client.isClosed).toBeNull();
    client.close();
  });

  it('is offered to the actor after a start whose snapshot missed it (H8)', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'missed' });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('before');
    await client.waitForMessages(1);
    const [requestId] = (await probeState(actor.actorId)).connections;
    expect(requestId).toBeDefined();
    await sleepNow(actor.actorId);
    // The next snapshot will not hold it, while the gateway still does.
    await stack.db.query('DELETE FROM hibernating_requests WHERE actor_id = $1', [actor.actorId]);

    client.send('after');
    await client.waitForMessages(2);
    const state = await probeState(actor.actorId);
    // The start reported it lost (M\L), then the gateway offered it and the actor took it anew.
    expect(state.disconnects).toEqual({ [requestId!]: 1 });
    expect(state.connects).toBe(2);
    expect(state.connections).toEqual([requestId]);
    expect(state.received.map((r) => r.text)).toEqual(['before', 'after']);
    expect(client.isClosed).toBeNull();
    expect(await rows(actor.actorId)).toEqual([requestId]);
    client.close();
  });

  it('delivers messages sent while the actor sleeps, in order, once', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'burst' });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('m0');
    await client.waitForMessages(1);
    await sleepNow(actor.actorId);
    const burst = Array.from({ length: 20 }, (_, i) => `m${i + 1}`);
    for (const text of burst) client.send(text);
    await client.waitForMessages(21);
    expect((await probeState(actor.actorId)).received.map((r) => r.text)).toEqual(['m0', ...burst]);
    client.close();
  });
});

describe('the gateway closes a client with a clear code', () => {
  it('when the actor stops and the socket is not hibernatable', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'ephemeral' });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId, '?ephemeral');
    client.send('x');
    await client.waitForMessages(1);
    expect(await rows(actor.actorId)).toEqual([]);
    await api.sleep(actor.actorId);
    expect(await client.waitForClose()).toMatchObject({ code: ClientCloseCode.ActorStopped });
  });

  it('when the actor is destroyed: rows gone, clients closed with 4410', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'doomed-sockets' });
    const awake = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    const other = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    awake.send('x');
    other.send('y');
    await awake.waitForMessages(1);
    await other.waitForMessages(1);
    await sleepNow(actor.actorId);
    expect(await rows(actor.actorId)).toHaveLength(2);

    expect((await api.destroy(actor.actorId)).status).toBe(202);
    expect(await awake.waitForClose()).toMatchObject({ code: ClientCloseCode.ActorDestroyed });
    expect(await other.waitForClose()).toMatchObject({ code: ClientCloseCode.ActorDestroyed });
    await stack.temporal.workflow.getHandle(actorWorkflowId(actor.actorId)).result();
    expect(await rows(actor.actorId)).toEqual([]);
  });

  it('past the pending limit, with 4413', async () => {
    // The actor's second start hangs, so nothing is acknowledged while messages pile up.
    const actor = await createActor(api, { name: 'probe', key: 'flooded', input: { hangAfterStarts: 1 } });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('first');
    await client.waitForMessages(1);
    await sleepNow(actor.actorId);
    for (let i = 0; i <= PENDING_FRAMES; i++) client.send(`flood ${i}`);
    expect(await client.waitForClose()).toMatchObject({ code: ClientCloseCode.TooManyPending });
    await waitFor(async () => (await rows(actor.actorId)).length === 0, { timeoutMs: 5_000, message: 'row deleted' });
  });

  it('when the actor does not wake in time, with 4503', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'unwakeable', input: { hangAfterStarts: 1 } });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('first');
    await client.waitForMessages(1);
    await sleepNow(actor.actorId);
    client.send('wake up');
    expect(await client.waitForClose(15_000)).toMatchObject({ code: ClientCloseCode.ActorUnavailable });
  });

  it("when the actor closes it, with the actor's code, and the row goes", async () => {
    const actor = await createActor(api, { name: 'probe', key: 'closer' });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('close-me');
    expect(await client.waitForClose()).toEqual({ code: 4000, reason: 'as asked' });
    await waitFor(async () => (await rows(actor.actorId)).length === 0, { timeoutMs: 5_000, message: 'row deleted' });
  });

  it('when the actor refuses the connection, with 4400', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'refuser' });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId, '?reject');
    expect(await client.waitForClose()).toMatchObject({ code: ClientCloseCode.Rejected, reason: 'refused on purpose' });
    expect(await rows(actor.actorId)).toEqual([]);
  });

  it('when a start finds no record of a hibernating connection (L\\M), with 4500', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'forgotten' });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('x');
    await client.waitForMessages(1);
    await sleepNow(actor.actorId);
    // The actor's record of the connection is lost while it sleeps.
    await stack.db.query("DELETE FROM actor_kv WHERE actor_id = $1 AND key LIKE '\\_\\_dormouse/conn/%'", [
      actor.actorId,
    ]);
    await api.wake(actor.actorId);
    expect(await client.waitForClose()).toMatchObject({ code: ClientCloseCode.UnknownConnection });
    await waitFor(async () => (await rows(actor.actorId)).length === 0, { timeoutMs: 5_000, message: 'row deleted' });
  });
});

describe('the WebSocket upgrade', () => {
  const upgrade = (id: string) =>
    TestClient.connect(stack.gatewayUrl, id).then(
      () => null,
      (err: { status?: number; body?: string }) => err,
    );

  it('answers a malformed actor id with a JSON 400', async () => {
    const err = await upgrade('not-a-uuid');
    expect(err?.status).toBe(400);
    expect(JSON.parse(err!.body!)).toMatchObject({ error: { code: 'bad_request' } });
  });

  it('answers an unknown actor with a JSON 404', async () => {
    const err = await upgrade(randomUUID());
    expect(err?.status).toBe(404);
    expect(JSON.parse(err!.body!)).toMatchObject({ error: { code: 'actor_not_found' } });
  });
});
