/**
 * Bad input gets a clear error and changes nothing: the management API answers 400 with a JSON
 * error; a runner that sends a malformed frame is closed with a code and a reason, reconnects
 * cleanly, and no other runner notices.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createLogger } from '../src/log.js';
import { RunnerCloseCode, SUPPORTED_PROTOCOL_VERSIONS, type RunnerToGateway } from '../src/protocol/runner-protocol.js';
import { GatewayLink, type Welcome } from '../src/runner/gateway-link.js';
import { actorRequest, createActor, type Api } from './harness/actors.js';
import { actorsApi } from './harness/http.js';
import { rawHello, runnerConnectUrl, type Hello } from './harness/raw-runner.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { wsText } from '../src/util/ws-data.js';

let stack: TestStack;
let api: Api;

beforeAll(async () => {
  stack = await createTestStack({ env: { DORMOUSE_MAX_BODY_BYTES: '4096' } });
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

async function actorCount(): Promise<number> {
  const { rows } = await stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM actors');
  return rows[0]!.n;
}

async function raw(method: string, path: string, body?: string, contentType = 'application/json') {
  const response = await fetch(`${stack.gatewayUrl}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': contentType },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  return { status: response.status, body: (await response.json()) as { error?: { code: string; message: string } } };
}

describe('the management API', () => {
  it.each([
    ['malformed JSON', 'POST', '/actors', '{"name": "chat",', 'bad_request'],
    ['an unknown field', 'POST', '/actors', JSON.stringify({ name: 'chat', colour: 'red' }), 'bad_request'],
    ['a wrongly typed field', 'POST', '/actors', JSON.stringify({ name: 5 }), 'bad_request'],
    ['a bad name', 'POST', '/actors', JSON.stringify({ name: 'no spaces please' }), 'bad_request'],
    [
      'an unknown crash policy',
      'POST',
      '/actors',
      JSON.stringify({ name: 'chat', crashPolicy: 'explode' }),
      'bad_request',
    ],
    ['an array body', 'POST', '/actors', JSON.stringify([{ name: 'chat' }]), 'bad_request'],
    [
      'an oversized body',
      'POST',
      '/actors',
      JSON.stringify({ name: 'chat', input: 'x'.repeat(5000) }),
      'body_too_large',
    ],
    ['get-or-create without a key', 'PUT', '/actors', JSON.stringify({ name: 'chat' }), 'bad_request'],
  ])('answers %s with 400 and creates nothing', async (_what, method, path, body, code) => {
    const before = await actorCount();
    const res = await raw(method, path, body);
    expect(res.status).toBe(400);
    expect(res.body.error?.code).toBe(code);
    expect(res.body.error?.message).toBeTruthy();
    expect(await actorCount()).toBe(before);
  });

  it('answers a non-JSON content type with 400', async () => {
    const res = await raw('POST', '/actors', 'name=chat', 'application/x-www-form-urlencoded');
    expect(res.status).toBe(400);
    expect(res.body.error?.code).toBe('bad_request');
  });

  it.each([
    ['a malformed actor id', '/actors/not-a-uuid', 400, 'bad_request'],
    ['an unknown actor', `/actors/${randomUUID()}`, 404, 'actor_not_found'],
    ['an unknown query parameter', '/actors?colour=red', 400, 'bad_request'],
    ['an out-of-range limit', '/actors?limit=0', 400, 'bad_request'],
    ['an unknown route', '/nowhere', 404, 'not_found'],
    ['a tunnel to a malformed id', '/actors/nope/http/state', 400, 'bad_request'],
    ['a tunnel to an unknown actor', `/actors/${randomUUID()}/http/state`, 404, 'actor_not_found'],
  ])('answers %s with a JSON %i', async (_what, path, status, code) => {
    const res = await raw('GET', path);
    expect(res.status).toBe(status);
    expect(res.body.error?.code).toBe(code);
  });

  it('refuses a body on sleep, and signals nothing', async () => {
    const actor = await createActor(api, { name: 'chat', key: 'quiet' });
    await actorRequest(stack.gatewayUrl, actor.actorId, '/state');
    const res = await raw('POST', `/actors/${actor.actorId}/sleep`, JSON.stringify({ now: true }));
    expect(res.status).toBe(400);
    const state = await actorRequest<{ generation: number }>(stack.gatewayUrl, actor.actorId, '/state');
    expect(state.body.generation).toBe(1);
  });
});

describe('the runner endpoint', () => {
  const connectUrl = () => runnerConnectUrl(stack.gatewayUrl);
  const hello = (runnerId: string, overrides: Partial<Hello> = {}) => rawHello({ runnerId, ...overrides });

  /** Opens a raw socket, sends frames in order, and resolves with how the gateway closed it. */
  function exchange(
    frames: string[],
    waitForWelcome = false,
  ): Promise<{ code: number; reason: string; welcomed: boolean }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(connectUrl());
      let welcomed = false;
      const timer = setTimeout(() => reject(new Error('the gateway did not close the socket')), 10_000);
      ws.on('open', () => {
        const [first, ...rest] = frames;
        ws.send(first!);
        if (!waitForWelcome) for (const f of rest) ws.send(f);
        ws.on('message', (data) => {
          if ((JSON.parse(wsText(data)) as { type: string }).type === 'welcome' && !welcomed) {
            welcomed = true;
            for (const f of rest) ws.send(f);
          }
        });
      });
      ws.on('close', (code, reason) => {
        clearTimeout(timer);
        resolve({ code, reason: reason.toString(), welcomed });
      });
      ws.on('error', reject);
    });
  }

  it('closes a socket whose first frame is not a hello, with 4000 and the reason', async () => {
    const closed = await exchange(['{oops']);
    expect(closed).toMatchObject({
      code: RunnerCloseCode.ProtocolError,
      reason: 'frame is not valid JSON',
      welcomed: false,
    });
  });

  it('closes a socket speaking no protocol version it speaks, with 4001 and both ranges', async () => {
    const closed = await exchange([JSON.stringify(hello(randomUUID(), { protocolVersions: { min: 98, max: 99 } }))]);
    expect(closed.code).toBe(RunnerCloseCode.UnsupportedVersion);
    expect(closed.reason).toBe(
      `runner speaks protocol versions 98 to 99; this gateway speaks ${SUPPORTED_PROTOCOL_VERSIONS.max}`,
    );
  });

  it('tells a version 1 runner, whose hello named one version, that its version is the problem', async () => {
    const { protocolVersions: _, ...rest } = hello(randomUUID());
    const closed = await exchange([JSON.stringify({ ...rest, protocolVersion: 1 })]);
    expect(closed.code).toBe(RunnerCloseCode.UnsupportedVersion);
    expect(closed.reason).toContain('runner speaks protocol versions 1;');
  });

  it('welcomes a runner at the highest version both speak', async () => {
    const { max } = SUPPORTED_PROTOCOL_VERSIONS;
    const welcome = await new Promise<{ type: string; protocolVersion: number }>((resolve, reject) => {
      const ws = new WebSocket(connectUrl());
      ws.on('open', () => ws.send(JSON.stringify(hello(randomUUID(), { protocolVersions: { min: 1, max: max + 5 } }))));
      ws.on('message', (data) => {
        resolve(JSON.parse(wsText(data)) as { type: string; protocolVersion: number });
        ws.close();
      });
      ws.on('error', reject);
    });
    expect(welcome).toMatchObject({ type: 'welcome', protocolVersion: max });
  });

  it('closes a runner that sends a malformed frame after the handshake, with 4000', async () => {
    const closed = await exchange(
      [JSON.stringify(hello(randomUUID())), JSON.stringify({ type: 'events', events: [{ index: 'x' }] })],
      true,
    );
    expect(closed.welcomed).toBe(true);
    expect(closed.code).toBe(RunnerCloseCode.ProtocolError);
    expect(closed.reason).toMatch(/^invalid frame: events/);
  });

  it('lets a runner reconnect cleanly after a malformed frame, and nobody else notices', async () => {
    const actor = await createActor(api, { name: 'chat', key: 'bystander' });
    expect((await actorRequest(stack.gatewayUrl, actor.actorId, '/state')).status).toBe(200);

    const welcomes: Welcome[] = [];
    const runnerId = randomUUID();
    const link = new GatewayLink(
      connectUrl(),
      {
        hello: () => hello(runnerId),
        onWelcome: (w) => welcomes.push(w),
        onMessage: () => undefined,
      },
      createLogger('test-link', 'silent'),
    );
    await link.start();
    // A frame no schema allows, sent as the SDK would send any frame.
    link.send({ type: 'ping', ts: 'yesterday' } as unknown as RunnerToGateway);
    await waitFor(() => welcomes.length >= 2, { timeoutMs: 10_000, message: 'the link reconnected' });
    expect(welcomes[1]!.runnerId).toBe(runnerId);
    const { rows } = await stack.db.query<{ gateway_id: string | null }>(
      'SELECT gateway_id FROM runners WHERE runner_id = $1',
      [runnerId],
    );
    expect(rows[0]!.gateway_id).not.toBeNull();
    await link.close();

    expect((await actorRequest(stack.gatewayUrl, actor.actorId, '/state')).status).toBe(200);
  });
});
