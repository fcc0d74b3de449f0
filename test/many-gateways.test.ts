/**
 * Many gateways over NATS (DESIGN §2.1), with real processes: a client on one gateway talks to an
 * actor whose runner is connected to another, through sleep, wake, move and a runner's death.
 */
import type { ChatMessage } from '../examples/chat.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../dev/free-port.js';
import { actorRequest, createActor, waitForActor, type Api, type ChatView } from './harness/actors.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type GatewayProcess, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';

let stack: TestStack;
let api: Api;
let gatewayA: GatewayProcess;
let gatewayB: GatewayProcess;

beforeAll(async () => {
  stack = await createTestStack({
    nats: true,
    runners: [],
    workers: 2,
    env: { DORMOUSE_RUNNER_LOST_MS: '3000', DORMOUSE_RUNNER_PING_MS: '500', DORMOUSE_BACKOFF_BASE_MS: '200' },
  });
  gatewayA = stack.gateway!;
  gatewayB = await stack.startGateway({ name: 'gateway-b' });
  // The only runner is connected to gateway B: every client of gateway A crosses the bus.
  await stack.startRunner({ name: 'runner-b', env: { DORMOUSE_GATEWAY_URL: gatewayB.url } });
  api = actorsApi(gatewayA.url);
}, 120_000);
afterAll(() => stack?.stop());

const hibernatingRows = async (actorId: string) =>
  (
    await stack.db.query<{ gateway_id: string }>(
      'SELECT gateway_id FROM hibernating_requests WHERE actor_id = $1 ORDER BY gateway_id',
      [actorId],
    )
  ).rows.map((r) => r.gateway_id);

const seqs = (client: TestClient) => client.json<ChatMessage>().map((f) => f.seq);

describe('two gateways on one bus', () => {
  it('tunnels HTTP from a gateway to an actor whose runner is on the other', async () => {
    const actor = await createActor(api, { name: 'chat', key: 'http-across' });
    const viaA = await actorRequest<ChatView>(gatewayA.url, actor.actorId, '/state');
    expect(viaA.status).toBe(200);
    expect(viaA.body.generation).toBe(1);
    const viaB = await actorRequest<ChatView>(gatewayB.url, actor.actorId, '/state');
    expect(viaB.body).toEqual(viaA.body);
  });

  it('carries WebSockets on both gateways through sleep and wake: one start restores both', async () => {
    const room = await createActor(api, { name: 'chat', key: 'ws-across' });
    const ann = await TestClient.connect(gatewayA.url, room.actorId, '?name=ann');
    const bob = await TestClient.connect(gatewayB.url, room.actorId, '?name=bob');
    await waitFor(async () => (await hibernatingRows(room.actorId)).length === 2, {
      timeoutMs: 10_000,
      message: 'both sockets registered',
    });
    ann.send('one');
    bob.send('two');
    await ann.waitForMessages(2);
    await bob.waitForMessages(2);

    expect((await api.sleep(room.actorId)).status).toBe(202);
    await waitForActor(api, room.actorId, (a) => a.state === 'sleeping', 'asleep');
    expect(new Set(await hibernatingRows(room.actorId)).size).toBe(2); // one row on each gateway
    expect(ann.isClosed).toBeNull();
    expect(bob.isClosed).toBeNull();

    ann.send('three'); // wakes the actor from gateway A; its start restores both sockets
    await ann.waitForMessages(3);
    await bob.waitForMessages(3);
    const awake = await waitForActor(api, room.actorId, (a) => a.state === 'running', 'awake');
    expect(awake.generation).toBe(2);
    bob.send('four');
    await ann.waitForMessages(4);
    await bob.waitForMessages(4);
    expect(seqs(ann)).toEqual([1, 2, 3, 4]);
    expect(seqs(bob)).toEqual([1, 2, 3, 4]);
    const state = await actorRequest<ChatView>(gatewayA.url, room.actorId, '/state');
    expect(state.body.connections).toBe(2);
    ann.close();
    bob.close();
  });

  it('keeps a client across the bus through an actor crash and its restart', async () => {
    const probe = await createActor(api, { name: 'probe', key: 'crash-across' });
    const ann = await TestClient.connect(gatewayA.url, probe.actorId, '?name=ann');
    ann.send('before');
    await ann.waitForMessages(1);
    const crashed = await actorRequest(gatewayA.url, probe.actorId, '/crash', { method: 'POST' });
    expect(crashed.status).toBe(500);
    await waitForActor(api, probe.actorId, (a) => a.generation === 2 && a.state === 'running', 'restarted');
    ann.send('after');
    await ann.waitForMessages(2);
    expect(ann.json<{ echo: string; n: number }>()).toEqual([
      { echo: 'before', n: 1 },
      { echo: 'after', n: 2 },
    ]);
    expect(ann.isClosed).toBeNull();
    ann.close();
  });

  it('keeps both gateways’ clients when the actor moves to a runner on the other gateway and its runner dies', async () => {
    const room = await createActor(api, { name: 'chat', key: 'move-across' });
    const ann = await TestClient.connect(gatewayA.url, room.actorId, '?name=ann');
    const bob = await TestClient.connect(gatewayB.url, room.actorId, '?name=bob');
    ann.send('before');
    await bob.waitForMessages(1);

    // A second runner on gateway A; then the first one dies: the actor moves there (crash and move).
    const runnerA = await stack.startRunner({ name: 'runner-a', env: { DORMOUSE_GATEWAY_URL: gatewayA.url } });
    const runnerB = stack.runners.find((r) => r.name === 'runner-b')!;
    runnerB.kill('SIGKILL');
    await runnerB.exited;
    const moved = await waitForActor(
      api,
      room.actorId,
      (a) => a.state === 'running' && a.generation > 1,
      'running again on the surviving runner',
      30_000,
    );

    bob.send('after');
    await ann.waitForMessages(2, 30_000);
    await bob.waitForMessages(2, 30_000);
    expect(ann.json<ChatMessage>().map((f) => f.text)).toEqual(['before', 'after']);
    expect(seqs(bob)).toEqual([1, 2]);
    expect(moved.generation).toBeGreaterThan(1);
    ann.close();
    bob.close();
    // Back to the one runner on gateway B, for what follows.
    await stack.startRunner({ name: 'runner-b2', env: { DORMOUSE_GATEWAY_URL: gatewayB.url } });
    await runnerA.stop();
  });

  it('holds an HTTP request and a WebSocket open for a runner that is away until it is back', async () => {
    // A runner that knows only gateway C: while C is down, it is connected nowhere.
    const gatewayC = await stack.startGateway({ name: 'gateway-c' });
    const runnerC = await stack.startRunner({ name: 'runner-c', env: { DORMOUSE_GATEWAY_URL: gatewayC.url } });
    const runnerB = stack.runners.find((r) => r.name === 'runner-b2')!;
    await runnerB.stop(); // so that the actor lands on runner C
    const probe = await createActor(api, { name: 'probe', key: 'runner-away' });
    expect((await actorRequest(gatewayA.url, probe.actorId, '/hit', { method: 'POST' })).status).toBe(200);

    gatewayC.kill('SIGKILL');
    await gatewayC.exited;
    const request = actorRequest<{ hits: number }>(gatewayA.url, probe.actorId, '/hit', { method: 'POST' });
    const socket = TestClient.connect(gatewayA.url, probe.actorId, '?name=ann', 30_000);
    await gatewayC.restart();

    expect(await request).toEqual({ status: 200, body: { hits: 2 } });
    const ann = await socket;
    ann.send('hello');
    await ann.waitForMessages(1);
    expect(ann.json<{ echo: string }>()[0]!.echo).toBe('hello');
    ann.close();
    await stack.startRunner({ name: 'runner-b3', env: { DORMOUSE_GATEWAY_URL: gatewayB.url } });
    await runnerC.stop();
    await gatewayC.stop();
  });

  it('loses nothing while NATS is down and recovers when it is back', async () => {
    const room = await createActor(api, { name: 'chat', key: 'nats-outage' });
    const ann = await TestClient.connect(gatewayA.url, room.actorId, '?name=ann'); // across the bus
    const bob = await TestClient.connect(gatewayB.url, room.actorId, '?name=bob'); // beside the runner
    ann.send('before');
    await ann.waitForMessages(1);
    await bob.waitForMessages(1);

    await stack.nats!.kill();
    ann.send('during-ann'); // waits at gateway A, unacknowledged
    bob.send('during-bob'); // its broadcast to ann is lost on the bus; the actor's outbox keeps it
    await bob.waitForMessages(2);
    await stack.nats!.start();

    await ann.waitForMessages(3, 30_000);
    await bob.waitForMessages(3, 30_000);
    expect(seqs(ann)).toEqual([1, 2, 3]);
    expect(seqs(bob)).toEqual([1, 2, 3]);
    expect(new Set(ann.json<ChatMessage>().map((f) => f.text))).toEqual(
      new Set(['before', 'during-ann', 'during-bob']),
    );
    expect(ann.isClosed).toBeNull();
    ann.close();
    bob.close();
  });

  it('refuses to start a gateway that cannot reach NATS, with the reason', async () => {
    const dead = `nats://127.0.0.1:${await freePort()}`;
    await expect(
      stack.startGateway({ name: 'gateway-no-nats', env: { DORMOUSE_NATS_URL: dead }, readyTimeoutMs: 20_000 }),
    ).rejects.toThrow(/cannot reach NATS at/);
  });

  it('refuses to start a second gateway without the bus, with the reason', async () => {
    await expect(
      stack.startGateway({ name: 'gateway-alone', env: { DORMOUSE_NATS_URL: '' }, readyTimeoutMs: 20_000 }),
    ).rejects.toThrow(/several gateways need a NATS bus/);
  });
});
