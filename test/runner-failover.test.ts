/**
 * Runner failover (issue 9 §4): a runner given several gateways (DORMOUSE_RUNNER_GATEWAY_URLS,
 * its own first) moves to the next when its gateway dies, well within the runner-lost threshold,
 * and keeps its actors: same runner, same generation, same state, nothing declared lost.
 * - Gateway A is SIGKILLed while the runner's actor serves requests through it.
 * - Gateway A freezes (SIGSTOP: its socket stays open but silent) with a start queued for the
 *   runner and an event of the runner unacknowledged: the runner notices the silence, moves to
 *   B, B delivers the start and hears the event again; A's late close on waking undoes nothing.
 * Real gateway, worker, runner and NATS processes (two gateways need the bus).
 */
import { readFile } from 'node:fs/promises';
import type { ChatMessage } from '../examples/chat.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeProcess } from '../dev/processes.js';
import { actorRequest, createActor, getActor, waitForActor } from './harness/actors.js';
import { actorsApi, type ActorView } from './harness/http.js';
import { createTestStack, type GatewayProcess, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';

/** Short enough that waiting past it is cheap; long enough for a loaded machine. */
const LOST_MS = 12_000;
const PING_MS = 1_000;
const ENV = {
  DORMOUSE_RUNNER_LOST_MS: String(LOST_MS),
  DORMOUSE_RUNNER_PING_MS: String(PING_MS),
  DORMOUSE_REAPER_INTERVAL_MS: '500',
};

interface ProbeState {
  hits: number;
  starts: number;
  generation: number;
  pid: number;
}

interface RunnerRow {
  runner_id: string;
  gateway_id: string | null;
  lost_at: Date | null;
  last_ping_at: Date;
  connection_epoch: string;
}

interface TwoGateways {
  stack: TestStack;
  a: GatewayProcess;
  b: GatewayProcess;
  runner: NodeProcess;
  ids: { a: string; b: string };
  stop(): Promise<void>;
}

/**
 * A stack with two gateways on a NATS server of its own and one runner that knows both, A first;
 * resolves once the runner is on A.
 */
async function twoGatewayStack(): Promise<TwoGateways> {
  const stack = await createTestStack({ nats: true, runners: [], env: ENV });
  try {
    const a = stack.gateway!;
    const b = await stack.startGateway();
    const runner = await stack.startRunner({ env: { DORMOUSE_RUNNER_GATEWAY_URLS: `${a.url},${b.url}` } });
    const ids = { a: await gatewayIdOf(a.url), b: await gatewayIdOf(b.url) };
    // The first connect tries the URLs in order: A is up, so the runner is on A.
    const row = await runnerRow(stack);
    expect(row.gateway_id).toBe(ids.a);
    return { stack, a, b, runner, ids, stop: () => stack.stop() };
  } catch (err) {
    await stack.stop().catch(() => undefined);
    throw err;
  }
}

async function gatewayIdOf(url: string): Promise<string> {
  const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(10_000) });
  return ((await res.json()) as { gatewayId: string }).gatewayId;
}

/** The one runner of the stack. */
async function runnerRow(stack: TestStack): Promise<RunnerRow> {
  const { rows } = await stack.db.query<RunnerRow>(
    'SELECT runner_id, gateway_id, lost_at, last_ping_at, connection_epoch FROM runners',
  );
  expect(rows).toHaveLength(1);
  return rows[0]!;
}

/** Waits until the runner's registry row names `gatewayId`; returns the row. */
function runnerMovesTo(stack: TestStack, gatewayId: string, timeoutMs: number): Promise<RunnerRow> {
  return waitFor(
    async () => {
      const row = await runnerRow(stack);
      return row.gateway_id === gatewayId ? row : undefined;
    },
    { timeoutMs, intervalMs: 50, message: `runner connected through gateway ${gatewayId}` },
  );
}

/**
 * Waits until the runner has pinged through its new gateway for longer than the lost threshold
 * after `since`: had the failover been too slow, the reaper would have declared it lost by then.
 */
async function pingsPastLostThreshold(stack: TestStack, since: number): Promise<RunnerRow> {
  return waitFor(
    async () => {
      const row = await runnerRow(stack);
      return row.last_ping_at.getTime() > since + LOST_MS ? row : undefined;
    },
    { timeoutMs: LOST_MS * 3, intervalMs: 200, message: 'runner pinging past the lost threshold' },
  );
}

/** Waits until the runner process has logged (at info) connecting to exactly these gateways, in order. */
async function expectConnectedTo(runner: NodeProcess, gatewayIds: string[]): Promise<void> {
  const logged = async () =>
    (await readFile(runner.logFile, 'utf8'))
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { msg?: string; gatewayId?: string; gateway?: string; level?: number })
      .filter((entry) => entry.msg === 'connected to gateway' && entry.level === 30);
  const entries = await waitFor(
    async () => {
      const found = await logged();
      return found.length >= gatewayIds.length ? found : undefined;
    },
    { timeoutMs: 5_000, message: `runner logged connecting to ${gatewayIds.length} gateways` },
  );
  expect(entries.map((e) => e.gatewayId)).toEqual(gatewayIds);
  for (const entry of entries) expect(entry.gateway).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/runners\/connect$/);
}

/** The actor did not move: same generation and runner, running. */
function expectSameActor(actor: ActorView, before: ActorView): void {
  expect(actor).toMatchObject({ state: 'running', generation: before.generation, runnerId: before.runnerId });
}

describe('the gateway holding the runner is SIGKILLed', () => {
  let stack: TestStack;
  let env: TwoGateways | undefined;

  beforeAll(async () => {
    env = await twoGatewayStack();
    stack = env.stack;
  });
  afterAll(() => env?.stop());

  it('moves the runner to the other gateway within the lost threshold, and its actor keeps running', async () => {
    const { a, b, runner, ids } = env!;
    const apiA = actorsApi(a.url);
    const apiB = actorsApi(b.url);
    const created = await createActor(apiA, { name: 'probe', key: 'failover', input: { sleepAfterMs: 600_000 } });
    // A client of the surviving gateway, talking across the bus to an actor on the runner.
    const room = await createActor(apiB, { name: 'chat', key: 'failover-room', input: { sleepAfterMs: 600_000 } });
    const client = await TestClient.connect(b.url, room.actorId, '?name=bea');
    client.send('before');
    await client.waitForMessages(1);
    const roomRunning = await waitForActor(apiB, room.actorId, (x) => x.state === 'running', 'room running');
    for (let i = 1; i <= 3; i++)
      expect(await actorRequest(a.url, created.actorId, '/hit', { method: 'POST' })).toEqual({
        status: 200,
        body: { hits: i },
      });
    const before = await actorRequest<ProbeState>(a.url, created.actorId, '/state');
    expect(before.body).toMatchObject({ hits: 3, starts: 1 });
    const running = await waitForActor(apiA, created.actorId, (x) => x.state === 'running', 'running');
    const { connection_epoch: epochBefore } = await runnerRow(stack);

    a.kill('SIGKILL');
    await a.exited;
    const killedAt = Date.now();

    // The runner is back through B long before the lost threshold.
    const moved = await runnerMovesTo(stack, ids.b, LOST_MS / 2);
    expect(Date.now() - killedAt).toBeLessThan(LOST_MS / 2);
    expect(moved.lost_at).toBeNull();
    expect(Number(moved.connection_epoch)).toBeGreaterThan(Number(epochBefore));
    await expectConnectedTo(runner, [ids.a, ids.b]);

    // Same generation, same runner process, the state persisted before the kill.
    expectSameActor(await getActor(apiB, created.actorId), running);
    const after = await actorRequest<ProbeState>(b.url, created.actorId, '/state');
    expect(after).toMatchObject({
      status: 200,
      body: { hits: 3, starts: 1, generation: before.body.generation, pid: before.body.pid },
    });
    expect(await actorRequest(b.url, created.actorId, '/hit', { method: 'POST' })).toEqual({
      status: 200,
      body: { hits: 4 },
    });

    // The surviving gateway's client lost nothing: same socket, same actor generation, in order.
    client.send('after');
    await client.waitForMessages(2);
    expect(client.isClosed).toBeNull();
    expect(client.json<ChatMessage>().map((f) => [f.seq, f.text])).toEqual([
      [1, 'before'],
      [2, 'after'],
    ]);
    expectSameActor(await getActor(apiB, room.actorId), roomRunning);

    // Past the lost threshold the runner is still registered and pinging, and nothing moved.
    const later = await pingsPastLostThreshold(stack, killedAt);
    expect(later).toMatchObject({ gateway_id: ids.b, lost_at: null, connection_epoch: moved.connection_epoch });
    expectSameActor(await getActor(apiB, created.actorId), running);
    expectSameActor(await getActor(apiB, room.actorId), roomRunning);
    expect((await actorRequest<ProbeState>(b.url, created.actorId, '/state')).body).toMatchObject({
      hits: 4,
      starts: 1,
      generation: before.body.generation,
    });
    expect(client.isClosed).toBeNull();
    client.close();
  });

  it('starts a runner whose first gateway is down on the next one', async () => {
    const { a, b, ids } = env!;
    a.kill('SIGKILL'); // already dead after the test above; this one must not depend on it
    await a.exited;
    const startedAt = Date.now();
    const late = await stack.startRunner({
      name: 'runner-late',
      env: { DORMOUSE_RUNNER_GATEWAY_URLS: `${a.url},${b.url}` },
    });
    expect(Date.now() - startedAt).toBeLessThan(LOST_MS);
    await expectConnectedTo(late, [ids.b]);
    const { rows } = await stack.db.query<{ gateway_id: string | null }>(
      'SELECT gateway_id FROM runners WHERE gateway_id IS NOT NULL',
    );
    expect(rows.map((r) => r.gateway_id)).toEqual([ids.b, ids.b]);
  });
});

describe('the gateway holding the runner freezes with a start queued for it', () => {
  let stack: TestStack;
  let env: TwoGateways | undefined;

  beforeAll(async () => {
    env = await twoGatewayStack();
    stack = env.stack;
  });
  afterAll(async () => {
    env?.a.kill('SIGCONT');
    await env?.stop();
  });

  it('the runner leaves the silent gateway and the other one delivers the pending start', async () => {
    const { a, b, runner, ids } = env!;
    const apiB = actorsApi(b.url);
    const first = await createActor(actorsApi(a.url), { name: 'probe', key: 'old', input: { sleepAfterMs: 600_000 } });
    const firstRunning = await waitForActor(apiB, first.actorId, (x) => x.state === 'running', 'running');
    // This one asks to sleep 2 s after its last request: while A is frozen, so its event goes
    // unacknowledged into A's socket, and only the resend after the move reaches its workflow.
    const idle = await createActor(actorsApi(a.url), { name: 'probe', key: 'idle', input: { sleepAfterMs: 2_000 } });
    const idleRunning = await waitForActor(apiB, idle.actorId, (x) => x.state === 'running', 'running');
    expect((await actorRequest(a.url, idle.actorId, '/hit', { method: 'POST' })).status).toBe(200);

    // A stops answering, its sockets open: the runner hears no pong, it has to notice by itself.
    a.kill('SIGSTOP');
    const frozenAt = Date.now();
    const created = await createActor(apiB, { name: 'probe', key: 'mid-start', input: { sleepAfterMs: 600_000 } });
    // The start is queued for the runner while it is still registered through the frozen A.
    const queued = await waitFor(
      async () => {
        const { rows } = await stack.db.query<{ acked: boolean }>(
          `SELECT acked_at IS NOT NULL AS acked FROM runner_commands
           WHERE actor_id = $1 AND payload->>'kind' = 'startActor'`,
          [created.actorId],
        );
        return rows[0];
      },
      { timeoutMs: 10_000, intervalMs: 50, message: 'start queued' },
    );
    expect(queued.acked).toBe(false);
    expect((await runnerRow(stack)).gateway_id).toBe(ids.a);

    // Five silent ping intervals, then B: its accept delivers the queued start.
    const moved = await runnerMovesTo(stack, ids.b, LOST_MS);
    expect(Date.now() - frozenAt).toBeLessThan(LOST_MS);
    expect(moved.lost_at).toBeNull();
    const started = await waitForActor(apiB, created.actorId, (x) => x.state === 'running', 'running', 20_000);
    expect(started).toMatchObject({ generation: 1, runnerId: moved.runner_id });
    expect((await actorRequest<ProbeState>(b.url, created.actorId, '/state')).body).toMatchObject({
      starts: 1,
      generation: 1,
    });
    await expectConnectedTo(runner, [ids.a, ids.b]);

    // The actor started through A moved with the runner, same generation.
    expectSameActor(await getActor(apiB, first.actorId), firstRunning);
    expect((await actorRequest<ProbeState>(b.url, first.actorId, '/state')).body).toMatchObject({
      starts: 1,
      generation: firstRunning.generation,
    });

    // The sleep intent sent into the frozen A was resent to B: the workflow put the actor to sleep.
    await waitForActor(apiB, idle.actorId, (x) => x.state === 'sleeping', 'asleep through B', 20_000);
    expect((await getActor(apiB, idle.actorId)).generation).toBe(idleRunning.generation);

    // A frozen gateway that wakes up must not undo the move: its late close of the old
    // connection (the epoch guard of disconnectRunner) leaves B's connection registered.
    a.kill('SIGCONT');
    await waitFor(
      async () => {
        const res = await fetch(`${a.url}/healthz`, { signal: AbortSignal.timeout(5_000) });
        return ((await res.json()) as { runners: number }).runners === 0;
      },
      { timeoutMs: 20_000, intervalMs: 100, message: 'gateway A saw the old connection close' },
    );
    expect(await runnerRow(stack)).toMatchObject({ gateway_id: ids.b, connection_epoch: moved.connection_epoch });
    const later = await pingsPastLostThreshold(stack, frozenAt);
    expect(later).toMatchObject({ gateway_id: ids.b, lost_at: null, connection_epoch: moved.connection_epoch });
    expect(await getActor(apiB, created.actorId)).toMatchObject({ state: 'running', generation: 1 });
  });
});
