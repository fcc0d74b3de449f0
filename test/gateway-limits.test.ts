/**
 * The gateway's client-socket hub under pressure and faults (issue 8 §2), with real processes and
 * real sockets: the cap on hibernatable sockets per actor (a start's snapshot travels in Temporal
 * payloads), the cap on output a client does not read, the gateway-wide budget of pending client
 * messages with `ws.pause()` back-pressure, and the LISTEN connection dropping while the actor
 * stops (the missed notices are made up for by re-reading the registry).
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientCloseCode } from '../src/protocol/client-close-codes.js';
import { actorRequest, createActor, waitForActor, type Api } from './harness/actors.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';

const KiB = 1024;
const MAX_HIBERNATABLE = 2;
const MAX_BUFFERED = 256 * KiB;
const PENDING_BUDGET = 128 * KiB;
let stack: TestStack;
let api: Api;

beforeAll(async () => {
  stack = await createTestStack({
    env: {
      DORMOUSE_MAX_HIBERNATABLE_PER_ACTOR: String(MAX_HIBERNATABLE),
      DORMOUSE_MAX_BUFFERED_BYTES: String(MAX_BUFFERED),
      DORMOUSE_GATEWAY_PENDING_BYTES: String(PENDING_BUDGET),
    },
  });
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

/** The gateway's log lines with this message. */
async function gatewayLogged(msg: string): Promise<number> {
  const text = await readFile(stack.gateway!.logFile, 'utf8');
  return text.split('\n').filter((line) => line.includes(`"msg":"${msg}"`)).length;
}

async function pendingBytesMetric(): Promise<number> {
  const text = await (await fetch(`${stack.gatewayUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('dormouse_pending_bytes '));
  return Number(line?.split(' ')[1]);
}

describe('hibernatable sockets per actor', () => {
  it('are capped when the actor accepts one more, with 4429; the actor hears of it', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'crowded', input: { sleepAfterMs: 60_000 } });
    const kept = [await TestClient.connect(stack.gatewayUrl, actor.actorId)];
    kept.push(await TestClient.connect(stack.gatewayUrl, actor.actorId));
    for (const client of kept) client.send('here');
    for (const client of kept) await client.waitForMessages(1);

    const extra = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    expect(await extra.closed).toEqual({
      code: ClientCloseCode.TooManyConnections,
      reason: 'too many hibernatable connections',
    });
    const { rows } = await stack.db.query('SELECT 1 FROM hibernating_requests WHERE actor_id = $1', [actor.actorId]);
    expect(rows).toHaveLength(MAX_HIBERNATABLE);
    // The actor accepted it, then was told it is gone; the kept ones still talk.
    const state = await waitFor(
      async () => {
        const { body } = await actorRequest<{ connections: string[]; disconnects: Record<string, number> }>(
          stack.gatewayUrl,
          actor.actorId,
          '/state',
        );
        return Object.keys(body.disconnects).length === 1 ? body : undefined;
      },
      { timeoutMs: 10_000, message: 'the actor told of the refused connection' },
    );
    expect(state.connections).toHaveLength(MAX_HIBERNATABLE);
    kept[0]!.send('still');
    await kept[0]!.waitForMessages(2);
    for (const client of kept) client.close();
  });
});

describe('the LISTEN connection dropping while the actor stops', () => {
  it('leaves no socket beside a sleeping actor: the registry is re-read and the socket hibernates', async () => {
    const actor = await createActor(api, { name: 'chat', key: 'unheard', input: { sleepAfterMs: 60_000 } });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('before');
    await client.waitForMessages(1);
    const restoredBefore = await gatewayLogged('LISTEN connection restored');

    // Keep the gateway's LISTEN connection down while the actor goes to sleep: its `stopping`
    // and `sleeping` notices are lost.
    let dropping = true;
    const dropper = (async () => {
      while (dropping) {
        await stack.db.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
           WHERE application_name = 'dormouse-gateway-listen' AND datname = current_database()`,
        );
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    try {
      expect((await api.sleep(actor.actorId)).status).toBe(202);
      await waitForActor(api, actor.actorId, (a) => a.state === 'sleeping', 'asleep');
    } finally {
      dropping = false;
      await dropper;
    }
    await waitFor(async () => (await gatewayLogged('LISTEN connection restored')) > restoredBefore, {
      timeoutMs: 20_000,
      message: 'the LISTEN connection restored',
    });
    await waitFor(async () => (await gatewayLogged('client sockets re-synchronised with the registry')) > 0, {
      timeoutMs: 10_000,
      message: 'the sockets re-synchronised',
    });

    // The socket hibernated: its next message wakes the actor, which answers (not an ack timeout).
    client.send('after');
    const received = await client.waitForMessages(2);
    expect(JSON.parse(received[1]!)).toMatchObject({ seq: 2, text: 'after' });
    expect((await api.get(actor.actorId)).body).toMatchObject({ actor: { generation: 2 } });
    expect(client.isClosed).toBeNull();
    client.close();
  });
});

describe('output a client does not read', () => {
  it('is capped: past the limit the client is closed with 4408', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'flooded', input: { sleepAfterMs: 60_000 } });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('hello');
    await client.waitForMessages(1);
    client.ws.pause();
    // 10 MiB: more than the kernel's socket buffers hold, so the rest waits in the gateway.
    const flood = await actorRequest(stack.gatewayUrl, actor.actorId, '/flood', {
      json: { count: 40, bytes: 256 * KiB },
    });
    expect(flood.status).toBe(202);
    await waitFor(async () => (await gatewayLogged('client does not read its output; closing it')) > 0, {
      timeoutMs: 20_000,
      message: 'the slow client closed',
    });
    client.ws.resume();
    expect(await client.closed).toMatchObject({ code: ClientCloseCode.SlowClient });
  });
});

describe('the gateway-wide budget of pending messages', () => {
  it('stops reading clients past it and resumes once the actor acknowledges; nothing is lost', async () => {
    const actor = await createActor(api, { name: 'chat', key: 'backlog', input: { sleepAfterMs: 60_000 } });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('first');
    await client.waitForMessages(1);

    // No runner: what the client sends waits at the gateway.
    for (const runner of [...stack.runners]) await runner.stop();
    await waitForActor(api, actor.actorId, (a) => a.state !== 'running', 'stopped');
    const count = 48;
    const text = (i: number) => `${String(i).padStart(4, '0')}${'y'.repeat(16 * KiB)}`;
    for (let i = 0; i < count; i++) client.send(text(i));

    await waitFor(async () => (await gatewayLogged('pending budget exceeded; client reads paused')) > 0, {
      timeoutMs: 20_000,
      message: 'client reads paused',
    });
    // Reading stopped near the budget (a read chunk past it), far below the 768 KiB sent.
    expect(await pendingBytesMetric()).toBeLessThan(PENDING_BUDGET + 160 * KiB);

    await stack.startRunner();
    const received = await client.waitForMessages(1 + count, 60_000);
    expect(received.slice(1).map((m) => (JSON.parse(m) as { text: string }).text)).toEqual(
      Array.from({ length: count }, (_, i) => text(i)),
    );
    expect(await gatewayLogged('pending back under half the budget; client reads resumed')).toBeGreaterThan(0);
    expect(client.isClosed).toBeNull();
    client.close();
  });
});
