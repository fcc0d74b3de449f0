/**
 * Actor→client frames (H9): exactly once, in order, while the client's socket stays open — across
 * a runner killed between the outbox write and the send, a runner SIGKILLed mid-burst, a runner
 * whose gateway socket drops, and a sleep during which onStop and onDisconnect broadcast. Also:
 * `ctx.kv` writes commit with the handler (a replay does not repeat them), the outbox bound closes
 * with its code, and hibernating connection records keep no credentials unless asked.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { OUTBOX_TEST_FRAMES } from './fixtures/outbox-actor.js';
import { actorRequest, createActor, getActor, waitForActor, type Api } from './harness/actors.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';
import { ClientCloseCode } from '../src/protocol/client-close-codes.js';

let stack: TestStack;
let api: Api;

const DIE_BEFORE_SEND = 'die after the outbox write';
const DROP_BEFORE_SEND = 'drop-before';
const DROP_AFTER_SEND = 'drop-after';
const DIE_MID_HANDLER = 'die-mid';
/** One marker for every runner: the first to handle DIE_MID_HANDLER dies, the next one does not. */
const DIE_MARKER = join(tmpdir(), `dormouse-outbound-${randomUUID()}`);
let runners = 0;
const runner = () => ({
  name: `runner-${++runners}`,
  env: {
    PROBE_RUNNER_NAME: `runner-${runners}`,
    PROBE_DIE_BEFORE_SEND: DIE_BEFORE_SEND,
    PROBE_DROP_BEFORE_SEND: DROP_BEFORE_SEND,
    PROBE_DROP_AFTER_SEND: DROP_AFTER_SEND,
    OUTBOX_DIE_MID_HANDLER: DIE_MID_HANDLER,
    OUTBOX_DIE_MARKER: DIE_MARKER,
  },
});

beforeAll(async () => {
  stack = await createTestStack({
    env: { DORMOUSE_RUNNER_PING_MS: '300', DORMOUSE_RUNNER_LOST_MS: '2000', DORMOUSE_REAPER_INTERVAL_MS: '500' },
    runners: [runner(), runner()],
  });
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

/** The test process of the runner hosting the actor now (each runner logs its id when ready). */
async function host(actorId: string) {
  const { runnerId } = await waitForActor(api, actorId, (a) => a.state === 'running', 'running');
  for (const process of stack.runners) {
    if (!runnerId) break;
    if ((await readFile(process.logFile, 'utf8')).includes(`"runnerId":"${runnerId}"`)) return process;
  }
  throw new Error(`no live test runner has id ${runnerId}`);
}

type ChatMessage = { seq: number; from: string; text: string };
const seqs = (client: TestClient) => client.json<ChatMessage>().map((m) => m.seq);
const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

async function chatRoom(key: string) {
  const actor = await createActor(api, { name: 'chat', key, input: { sleepAfterMs: 60_000 } });
  const clients = await Promise.all(
    ['ann', 'bob', 'cid'].map((name) => TestClient.connect(stack.gatewayUrl, actor.actorId, `?name=${name}`)),
  );
  return { actor, clients };
}

describe('a chat room whose runner dies', () => {
  it('delivers a broadcast written to the outbox by a runner that died before sending it', async () => {
    await stack.startRunner(runner()); // somewhere to move to, whichever runner dies
    const { actor, clients } = await chatRoom('dies-before-send');
    const [ann, bob, cid] = clients as [TestClient, TestClient, TestClient];
    ann.send('one');
    await Promise.all(clients.map((c) => c.waitForMessages(1)));
    const victim = await host(actor.actorId);

    // Its broadcast is durable in the outbox (with the state and the index), then the runner
    // dies before any copy is sent: the next host must send it, once, to every client.
    bob.send(DIE_BEFORE_SEND);
    await victim.exited;
    cid.send('three');
    await Promise.all(clients.map((c) => c.waitForMessages(3, 30_000)));
    const state = await actorRequest<{ seq: number; generation: number }>(stack.gatewayUrl, actor.actorId, '/state');
    expect(state.body).toMatchObject({ seq: 3, generation: 2 });
    for (const client of clients) {
      expect(seqs(client)).toEqual([1, 2, 3]);
      expect(client.json<ChatMessage>()[1]!.text).toBe(DIE_BEFORE_SEND);
      expect(client.isClosed).toBeNull();
    }
    for (const client of clients) client.close();
  });

  it('delivers every broadcast exactly once, in order, to three clients when it is SIGKILLed mid-burst', async () => {
    await stack.startRunner(runner());
    const { actor, clients } = await chatRoom('sigkill-burst');
    const victim = await host(actor.actorId);
    const PER_CLIENT = 15;
    for (let i = 1; i <= PER_CLIENT; i++) for (const [n, client] of clients.entries()) client.send(`c${n}-${i}`);
    await clients[0]!.waitForMessages(8);
    victim.kill('SIGKILL');
    await victim.exited;

    const total = PER_CLIENT * clients.length;
    await waitForActor(api, actor.actorId, (a) => a.state === 'running' && a.generation === 2, 'moved', 30_000);
    await Promise.all(clients.map((c) => c.waitForMessages(total, 30_000)));
    const state = await actorRequest<{ seq: number }>(stack.gatewayUrl, actor.actorId, '/state');
    expect(state.body.seq).toBe(total);
    for (const client of clients) {
      expect(seqs(client)).toEqual(range(total));
      expect(client.isClosed).toBeNull();
    }
    // Every client message processed once: each text appears in exactly one broadcast.
    const texts = clients[0]!.json<ChatMessage>().map((m) => m.text);
    expect(new Set(texts).size).toBe(total);
    for (const client of clients) client.close();
  });
});

type OutboxFrame = { n: number; text: string };

describe('a runner whose gateway socket drops (same generation)', () => {
  it('resends what the gateway missed and the gateway drops what it already delivered', async () => {
    const actor = await createActor(api, { name: 'outbox', key: 'reconnects', input: { sleepAfterMs: 60_000 } });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    const runnerProcess = await host(actor.actorId);
    client.send('first');
    await client.waitForMessages(1);
    // Dropped before the frame leaves: it must come after the reconnect.
    client.send(DROP_BEFORE_SEND);
    client.send('third');
    await client.waitForMessages(3, 30_000);
    // Dropped just after the frame left, before its acknowledgement could come back: the runner
    // sends it again after the reconnect, and the gateway must not deliver it twice.
    client.send(DROP_AFTER_SEND);
    client.send('fifth');
    await client.waitForMessages(5, 30_000);
    client.send('sixth');
    await client.waitForMessages(6, 30_000);

    const frames = client.json<OutboxFrame>();
    expect(frames.map((f) => f.n)).toEqual(range(6));
    expect(frames.map((f) => f.text)).toEqual(['first', DROP_BEFORE_SEND, 'third', DROP_AFTER_SEND, 'fifth', 'sixth']);
    expect((await getActor(api, actor.actorId)).generation).toBe(1);
    const log = await readFile(runnerProcess.logFile, 'utf8');
    expect(log.match(/connected to gateway/g)?.length ?? 0).toBeGreaterThanOrEqual(3);
    expect(client.isClosed).toBeNull();
    client.close();
  });
});

describe('an actor put to sleep', () => {
  it('delivers what onDisconnect and onStop broadcast while it stops, once', async () => {
    const actor = await createActor(api, { name: 'outbox', key: 'stop-broadcast', input: { sleepAfterMs: 60_000 } });
    const stays = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    const leaves = await TestClient.connect(stack.gatewayUrl, actor.actorId, '?ephemeral');
    stays.send('hello');
    await Promise.all([stays.waitForMessages(1), leaves.waitForMessages(1)]);

    expect((await api.sleep(actor.actorId)).status).toBe(202);
    await waitForActor(api, actor.actorId, (a) => a.state === 'sleeping', 'asleep');
    expect((await leaves.waitForClose()).code).toBe(ClientCloseCode.ActorStopped);
    await stays.waitForMessages(3);
    // Waking it restores the connection, and with it the outbox: nothing comes twice.
    stays.send('again');
    await stays.waitForMessages(4, 30_000);
    await waitForActor(api, actor.actorId, (a) => a.state === 'running' && a.generation === 2, 'awake');
    const frames = stays.json<OutboxFrame>();
    expect(frames.map((f) => f.n)).toEqual([1, 2, 3, 4]);
    expect(frames.map((f) => f.text)).toEqual(['hello', expect.stringContaining('left'), 'stopping', 'again']);
    expect(stays.isClosed).toBeNull();
    stays.close();
  });
});

describe('a message replayed after its runner died mid-handler', () => {
  it('does not repeat its ctx.kv writes', async () => {
    await stack.startRunner(runner());
    const actor = await createActor(api, { name: 'outbox', key: 'kv-replay', input: { sleepAfterMs: 60_000 } });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    const victim = await host(actor.actorId);
    const count = async (name: string) =>
      (await actorRequest<{ count: number }>(stack.gatewayUrl, actor.actorId, `/kv/${name}`)).body.count;

    client.send('kv:before');
    await waitFor(async () => (await count('before')) === 1, { timeoutMs: 10_000, message: 'kv:before counted' });
    // Dies after its ctx.kv.put, before the handler's write: the gateway resends the message to
    // the next generation, which processes it (once: the first put never committed).
    client.send(`kv:${DIE_MID_HANDLER}`);
    await victim.exited;
    client.send('kv:after');
    await waitForActor(api, actor.actorId, (a) => a.state === 'running' && a.generation === 2, 'moved', 30_000);
    await waitFor(async () => (await count('after')) === 1, { timeoutMs: 30_000, message: 'kv:after counted' });
    expect(await count(DIE_MID_HANDLER)).toBe(1);
    expect(await count('before')).toBe(1);
    client.close();
  });
});

describe('the outbox bound', () => {
  it('closes the connection with OutboxFull past it, after delivering everything before it', async () => {
    const actor = await createActor(api, { name: 'outbox', key: 'flood', input: { sleepAfterMs: 60_000 } });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send(`flood:${OUTBOX_TEST_FRAMES + 10}`);
    const closed = await client.waitForClose();
    expect(closed.code).toBe(ClientCloseCode.OutboxFull);
    expect(client.json<{ flood: number }>().map((f) => f.flood)).toEqual(range(OUTBOX_TEST_FRAMES));
  });
});

describe('hibernating connection records', () => {
  const headers = {
    authorization: 'Bearer s3cret',
    cookie: 'sid=hunter2',
    'x-api-key': 'k-123',
    'x-room': 'blue',
  };

  async function persistedHeaders(name: string): Promise<Record<string, string>> {
    const actor = await createActor(api, { name, key: `headers-${name}`, input: { sleepAfterMs: 60_000 } });
    const url = `${stack.gatewayUrl.replace(/^http/, 'ws')}/actors/${actor.actorId}/ws`;
    const ws = new WebSocket(url, { headers });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const client = await new Promise<WebSocket>((resolve) => {
      ws.once('message', () => resolve(ws));
      ws.send('hi');
    });
    const { rows } = await stack.db.query<{ value: Buffer }>(
      `SELECT value FROM actor_kv WHERE actor_id = $1 AND key LIKE '\\_\\_dormouse/conn/%'`,
      [actor.actorId],
    );
    client.close();
    expect(rows).toHaveLength(1);
    return (JSON.parse(rows[0]!.value.toString()) as { headers: Record<string, string> }).headers;
  }

  it('keep no credentials unless the actor type asks for them by name', async () => {
    const probe = await persistedHeaders('probe');
    expect(probe['x-room']).toBe('blue');
    for (const secret of ['authorization', 'cookie', 'x-api-key']) expect(probe).not.toHaveProperty(secret);

    const outbox = await persistedHeaders('outbox'); // persistHeaders: ['Authorization']
    expect(outbox).toMatchObject({ authorization: 'Bearer s3cret', 'x-room': 'blue' });
    for (const secret of ['cookie', 'x-api-key']) expect(outbox).not.toHaveProperty(secret);
  });
});
