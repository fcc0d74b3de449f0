/**
 * Access control, each refusal checked: outside development mode the gateway will not start
 * without its tokens; the management API wants the admin token; a runner needs its pool's
 * token; and a runner with a valid token still speaks only for the actors it hosts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ReadinessError } from '../dev/processes.js';
import { createLogger } from '../src/log.js';
import { RunnerCloseCode, parseGatewayFrame, type GatewayToRunner } from '../src/protocol/runner-protocol.js';
import { createRunner } from '../src/runner/index.js';
import { rawHello, runnerConnectUrl } from './harness/raw-runner.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';
import { wsText } from '../src/util/ws-data.js';

const ADMIN = 'admin-token-0123456789';
const RUNNER = 'runner-token-default';
const OTHER = 'runner-token-other';
let stack: TestStack;

beforeAll(async () => {
  stack = await createTestStack({
    env: {
      DORMOUSE_MODE: 'production',
      DORMOUSE_ADMIN_TOKEN: ADMIN,
      DORMOUSE_RUNNER_TOKENS: `default=${RUNNER},other=${OTHER}`,
    },
    runners: [{ name: 'runner-a', env: { DORMOUSE_RUNNER_TOKEN: RUNNER } }],
  });
});
afterAll(() => stack?.stop());

async function api(method: string, path: string, options: { token?: string; body?: unknown } = {}) {
  const response = await fetch(`${stack.gatewayUrl}${path}`, {
    method,
    headers: {
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: AbortSignal.timeout(30_000),
  });
  return {
    status: response.status,
    body: (await response.json()) as {
      actor?: { actorId: string; state: string; generation: number; crashCount: number };
      error?: { code: string };
    },
  };
}

async function createRunning(key: string): Promise<string> {
  const created = await api('POST', '/actors', { token: ADMIN, body: { name: 'probe', key } });
  expect(created.status).toBe(201);
  const actorId = created.body.actor!.actorId;
  await waitFor(
    async () => (await api('GET', `/actors/${actorId}`, { token: ADMIN })).body.actor?.state === 'running',
    { timeoutMs: 20_000, message: 'running' },
  );
  return actorId;
}

const connectUrl = () => runnerConnectUrl(stack.gatewayUrl);

describe('outside development mode', () => {
  it('the gateway refuses to start without its tokens', async () => {
    const err = await stack
      .startGateway({ env: { DORMOUSE_ADMIN_TOKEN: '', DORMOUSE_RUNNER_TOKENS: '' } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReadinessError);
    expect((err as Error).message).toContain(
      'DORMOUSE_ADMIN_TOKEN and DORMOUSE_RUNNER_TOKENS must be set outside development mode',
    );
  });
});

describe('the management API', () => {
  it.each([
    ['no token', undefined],
    ['a wrong token', 'not-the-admin-token'],
  ])('refuses %s with 401 and creates nothing', async (_what, token) => {
    const before = (await stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM actors')).rows[0]?.n;
    const res = await api('POST', '/actors', { ...(token ? { token } : {}), body: { name: 'chat' } });
    expect(res).toMatchObject({ status: 401, body: { error: { code: 'unauthorized' } } });
    expect((await api('GET', '/actors', token ? { token } : {})).status).toBe(401);
    expect((await stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM actors')).rows[0]?.n).toBe(before);
  });

  it('serves the admin token, while tunnelled traffic needs none', async () => {
    const actorId = await createRunning('open-door');
    const tunnelled = await fetch(`${stack.gatewayUrl}/actors/${actorId}/http/state`);
    expect(tunnelled.status).toBe(200);
  });
});

describe('the runner endpoint', () => {
  it('refuses an upgrade without a token with 401', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(connectUrl());
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => reject(new Error('upgraded without a token')));
    });
    expect(status).toBe(401);
  });

  it('closes a runner whose token belongs to another pool, with 4003', async () => {
    const closed = await new Promise<{ code: number; reason: string }>((resolve) => {
      const ws = new WebSocket(connectUrl(), { headers: { authorization: `Bearer ${OTHER}` } });
      ws.once('open', () => ws.send(JSON.stringify(rawHello())));
      ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    expect(closed).toEqual({ code: RunnerCloseCode.Unauthorized, reason: 'the token is not valid for pool default' });
  });

  it('stops an SDK runner with a bad token at start, with a clear error and no retry loop', async () => {
    const runner = createRunner({
      gatewayUrl: stack.gatewayUrl,
      actors: [{ name: 'unhosted' }],
      token: 'wrong',
      log: createLogger('test-runner', 'silent'),
    });
    await expect(runner.start()).rejects.toThrow(/HTTP 401.*DORMOUSE_RUNNER_TOKEN/);
  });
});

describe('a runner with a valid token', () => {
  /** A raw runner speaking the protocol, collecting what the gateway sends it. */
  async function rogue(): Promise<{ ws: WebSocket; frames: GatewayToRunner[] }> {
    const ws = new WebSocket(connectUrl(), { headers: { authorization: `Bearer ${RUNNER}` } });
    const frames: GatewayToRunner[] = [];
    ws.on('message', (data) => {
      const parsed = parseGatewayFrame(wsText(data));
      if (parsed.ok) frames.push(parsed.message);
    });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    ws.send(JSON.stringify(rawHello()));
    await waitFor(() => frames.some((f) => f.type === 'welcome'), { timeoutMs: 10_000, message: 'welcome' });
    return { ws, frames };
  }

  it('cannot report events, or touch storage, for an actor it does not host', async () => {
    const actorId = await createRunning('not-yours');
    const { ws, frames } = await rogue();
    // Fresh indices (the real runner has sent only index 0, `running`): a workflow would take them.
    const forged = [1, 2, 3].map((index) => ({
      actorId,
      generation: 1,
      index,
      event: { kind: 'stopped', code: 'error', message: 'forged' },
    }));
    ws.send(JSON.stringify({ type: 'events', events: forged }));
    await waitFor(() => frames.some((f) => f.type === 'ackEvents'), {
      timeoutMs: 10_000,
      message: 'the forged event acknowledged (and dropped)',
    });
    ws.send(
      JSON.stringify({
        type: 'kvRequest',
        kvId: 1,
        actorId,
        generation: 1,
        op: { kind: 'write', put: [{ key: 'x', value: 'eA==' }], delete: [] },
      }),
    );
    const kv = await waitFor(() => frames.find((f) => f.type === 'kvResponse'), {
      timeoutMs: 10_000,
      message: 'kv answer',
    });
    expect(kv).toMatchObject({ result: { ok: false, code: 'fenced' } });

    // The actor is untouched: still running its first generation, no crash recorded.
    const state = await fetch(`${stack.gatewayUrl}/actors/${actorId}/http/state`);
    expect(state.status).toBe(200);
    expect((await api('GET', `/actors/${actorId}`, { token: ADMIN })).body.actor).toMatchObject({
      state: 'running',
      generation: 1,
      crashCount: 0,
    });
    ws.close();
  });

  it('cannot speak for a client connection it does not hold', async () => {
    const actorId = await createRunning('not-your-socket');
    const client = await TestClient.connect(stack.gatewayUrl, actorId);
    client.send('hi');
    await client.waitForMessages(1);
    const { rows } = await stack.db.query<{ request_id: string }>(
      'SELECT request_id FROM hibernating_requests WHERE actor_id = $1',
      [actorId],
    );
    const requestId = rows[0]!.request_id;

    const { ws } = await rogue();
    const forged = (message: object) => JSON.stringify({ type: 'tunnel', requestId, actorId, generation: 1, message });
    ws.send(forged({ kind: 'wsMessage', data: 'forged', binary: false }));
    ws.send(forged({ kind: 'wsClose', code: 4000, reason: 'forged' }));
    // The real actor still talks to the client, and nothing forged got through.
    client.send('still there?');
    await client.waitForMessages(2);
    expect(client.received).not.toContain('forged');
    expect(client.isClosed).toBeNull();
    ws.close();
    client.close();
  });
});
