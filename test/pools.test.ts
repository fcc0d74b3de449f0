/**
 * Pools (DESIGN §6, issue 8 §3): an actor runs only on runners of its pool; a pool's token admits
 * a runner only for the actor names the operator allowed that pool (DORMOUSE_POOL_ACTORS); a hello
 * cannot take over the runner id of another pool; a runner's capacity is clamped. Real gateway,
 * real runners of two pools, and raw hellos for each refusal.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { RunnerCloseCode, parseGatewayFrame, type GatewayToRunner } from '../src/protocol/runner-protocol.js';
import { wsText } from '../src/util/ws-data.js';
import { rawHello, runnerConnectUrl, type Hello } from './harness/raw-runner.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';

const ADMIN = 'admin-token-0123456789';
const TOKEN_A = 'runner-token-pool-a';
const TOKEN_B = 'runner-token-pool-b';
const MAX_CAPACITY = 50;
let stack: TestStack;

beforeAll(async () => {
  stack = await createTestStack({
    env: {
      DORMOUSE_MODE: 'production',
      DORMOUSE_ADMIN_TOKEN: ADMIN,
      DORMOUSE_RUNNER_TOKENS: `a=${TOKEN_A},b=${TOKEN_B}`,
      // Every actor type of the test runner (test/fixtures/runner.ts).
      DORMOUSE_POOL_ACTORS: 'a=chat|probe|outbox,b=chat|probe|outbox',
      DORMOUSE_RUNNER_MAX_CAPACITY: String(MAX_CAPACITY),
    },
    runners: [
      { name: 'runner-a', env: { DORMOUSE_RUNNER_POOL: 'a', DORMOUSE_RUNNER_TOKEN: TOKEN_A } },
      { name: 'runner-b', env: { DORMOUSE_RUNNER_POOL: 'b', DORMOUSE_RUNNER_TOKEN: TOKEN_B } },
    ],
  });
});
afterAll(() => stack?.stop());

interface ActorBody {
  actor?: { actorId: string; pool: string; state: string; runnerId: string | null };
  error?: { code: string; message: string };
}

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: ActorBody }> {
  const response = await fetch(`${stack.gatewayUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: response.status, body: (await response.json()) as ActorBody };
}

async function runnerOfPool(pool: string): Promise<string> {
  const { rows } = await stack.db.query<{ runner_id: string }>(
    'SELECT runner_id FROM runners WHERE pool = $1 AND gateway_id IS NOT NULL',
    [pool],
  );
  expect(rows).toHaveLength(1);
  return rows[0]!.runner_id;
}

async function runningOn(actorId: string): Promise<string> {
  return waitFor(
    async () => {
      const { actor } = (await api('GET', `/actors/${actorId}`)).body;
      return actor?.state === 'running' ? actor.runnerId : undefined;
    },
    { timeoutMs: 30_000, message: `actor ${actorId} running` },
  );
}

describe('actors of a pool', () => {
  it('run only on runners of that pool', async () => {
    const [runnerA, runnerB] = [await runnerOfPool('a'), await runnerOfPool('b')];
    for (let i = 0; i < 3; i++) {
      const inB = await api('POST', '/actors', { name: 'probe', key: `b-${i}`, pool: 'b' });
      expect(inB.status).toBe(201);
      expect(inB.body.actor!.pool).toBe('b');
      expect(await runningOn(inB.body.actor!.actorId)).toBe(runnerB);
    }
    const inA = await api('PUT', '/actors', { name: 'probe', key: 'in-a', pool: 'a' });
    expect(inA.status).toBe(201);
    expect(inA.body.actor!.pool).toBe('a');
    expect(await runningOn(inA.body.actor!.actorId)).toBe(runnerA);
  });

  it('are in the default pool unless they name one, and keep their pool on get-or-create', async () => {
    const created = await api('POST', '/actors', { name: 'probe', key: 'nowhere' });
    expect(created.body.actor).toMatchObject({ pool: 'default' });
    // No runner of the default pool: it waits instead of landing on pool a's or b's runner.
    expect((await api('GET', `/actors/${created.body.actor!.actorId}`)).body.actor?.runnerId).toBeNull();

    expect((await api('PUT', '/actors', { name: 'probe', key: 'nowhere' })).status).toBe(200);
    const moved = await api('PUT', '/actors', { name: 'probe', key: 'nowhere', pool: 'b' });
    expect(moved).toMatchObject({ status: 409, body: { error: { code: 'actor_exists' } } });
    expect(moved.body.error!.message).toContain('exists in pool default');
  });

  it('refuses a pool that is not a name, and creates nothing', async () => {
    const res = await api('POST', '/actors', { name: 'probe', key: 'bad-pool', pool: '' });
    expect(res).toMatchObject({ status: 400, body: { error: { code: 'bad_request' } } });
    expect((await api('GET', '/actors?name=probe&key=bad-pool')).body).toMatchObject({ actors: [] });
  });
});

describe('a runner hello', () => {
  const connectUrl = () => runnerConnectUrl(stack.gatewayUrl);
  const hello = (fields: Partial<Hello>) => rawHello({ actorNames: ['probe'], ...fields });

  /** Says hello with `token`; resolves with the close, or the welcome. */
  function sayHello(
    token: string,
    frame: object,
  ): Promise<{ closed?: { code: number; reason: string }; welcome?: GatewayToRunner; ws: WebSocket }> {
    const ws = new WebSocket(connectUrl(), { headers: { authorization: `Bearer ${token}` } });
    return new Promise((resolve, reject) => {
      ws.once('open', () => ws.send(JSON.stringify(frame)));
      ws.once('error', reject);
      ws.on('message', (data) => {
        const parsed = parseGatewayFrame(wsText(data));
        if (parsed.ok && parsed.message.type === 'welcome') resolve({ welcome: parsed.message, ws });
      });
      ws.once('close', (code, reason) => resolve({ closed: { code, reason: reason.toString() }, ws }));
    });
  }

  it('naming an actor type its pool may not host is refused with 4003', async () => {
    const { closed } = await sayHello(TOKEN_A, hello({ pool: 'a', actorNames: ['probe', 'unhosted'] }));
    expect(closed).toEqual({ code: RunnerCloseCode.Unauthorized, reason: 'pool a may not host unhosted' });
  });

  it('cannot take over the runner id of another pool', async () => {
    const runnerA = await runnerOfPool('a');
    const { closed } = await sayHello(TOKEN_B, hello({ pool: 'b', runnerId: runnerA }));
    expect(closed).toEqual({ code: RunnerCloseCode.Unauthorized, reason: `runner ${runnerA} belongs to another pool` });
    // The row is pool a's runner still, connected where it was.
    const { rows } = await stack.db.query<{ pool: string; gateway_id: string | null }>(
      'SELECT pool, gateway_id FROM runners WHERE runner_id = $1',
      [runnerA],
    );
    expect(rows[0]).toMatchObject({ pool: 'a' });
    expect(rows[0]!.gateway_id).not.toBeNull();
  });

  it('asking for more than the maximum capacity is clamped to it', async () => {
    const runnerId = randomUUID();
    const { welcome, ws } = await sayHello(TOKEN_A, hello({ pool: 'a', runnerId, capacity: 10 * MAX_CAPACITY }));
    expect(welcome).toBeDefined();
    const { rows } = await stack.db.query<{ capacity: number }>('SELECT capacity FROM runners WHERE runner_id = $1', [
      runnerId,
    ]);
    expect(rows[0]).toEqual({ capacity: MAX_CAPACITY });
    ws.close();
    // Gone again before other tests allocate to pool a.
    await waitFor(
      async () =>
        (await stack.db.query('SELECT 1 FROM runners WHERE runner_id = $1 AND gateway_id IS NULL', [runnerId]))
          .rowCount === 1,
      { timeoutMs: 10_000, message: 'the clamped runner disconnected' },
    );
  });
});
