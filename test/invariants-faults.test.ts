/**
 * Faults at the edges of H6 and H9, with a runner of its own (test/fixtures/invariants-runner.ts):
 * a message the actor had not acknowledged when it stopped wakes it at once (H6); a frame lost
 * on the wire, either way, closes the client with 4409 instead of leaving a hole; wake signals
 * and runner events that arrive while the workflow continues as new are not lost (the test
 * server suggests it every 150 events); a client frame for a request the runner does not know
 * is closed explicitly (H8).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientCloseCode } from '../src/protocol/client-close-codes.js';
import { LOST_INBOUND } from './fixtures/invariants-wire.js';
import { actorRequest, createActor, waitForActor, type Api } from './harness/actors.js';
import { activityCalls, actorHistories, recordedStarts } from './harness/history.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';

let stack: TestStack;
let api: Api;

beforeAll(async () => {
  stack = await createTestStack({
    env: { DORMOUSE_BACKOFF_BASE_MS: '200', DORMOUSE_WAKE_TIMEOUT_MS: '20000' },
    runners: [{ script: 'test/fixtures/invariants-runner.ts' }],
  });
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

describe('a message unacknowledged when its actor stops (H6)', () => {
  it('wakes the actor at once, with no new message from the client', async () => {
    // The crash policy `sleep`: nothing but the gateway's wake brings it back.
    const actor = await createActor(api, { name: 'handler-crash', crashPolicy: 'sleep' });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('hello');
    await client.waitForMessages(1);
    client.send('crash');

    const woken = await waitForActor(
      api,
      actor.actorId,
      (a) => a.state === 'running' && a.generation === 2,
      'woken by its unacknowledged message',
      15_000,
    );
    expect(woken.generation).toBe(2);
    const starts = recordedStarts(activityCalls(await actorHistories(stack.temporal, actor.actorId)));
    expect(starts.map((s) => s.reason)).toEqual(['create', 'wake']);
    // The crashing handler had processed it (its index is durable): the new generation drops the
    // resent copy and acknowledges it; the socket stayed open and the next message is the next one.
    client.send('after');
    const [, echo] = await client.waitForMessages(2);
    expect(JSON.parse(echo!)).toEqual({ echo: 'after', generation: 2 });
    const state = (await actorRequest<{ received: string[] }>(stack.gatewayUrl, actor.actorId, '/')).body;
    expect(state.received).toEqual(['hello', 'after']);
    expect(client.isClosed).toBeNull();
    client.close();
  });
});

describe('a frame lost on the wire while the socket is active', () => {
  it('client to actor: the actor sees the gap and closes the connection with 4409', async () => {
    const actor = await createActor(api, { name: 'wire', key: 'inbound-gap' });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('first');
    await client.waitForMessages(1);
    client.send(LOST_INBOUND);
    client.send('past the gap');
    expect(await client.waitForClose()).toMatchObject({ code: ClientCloseCode.MessageGap });
    expect(client.received).toEqual(['first']);
    const state = (await actorRequest<{ received: string[] }>(stack.gatewayUrl, actor.actorId, '/')).body;
    expect(state.received).toEqual(['first']);
  });

  it('actor to client: the gateway sees the gap and closes the client with 4409, delivering nothing past it', async () => {
    const actor = await createActor(api, { name: 'wire', key: 'outbound-gap' });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('first');
    await client.waitForMessages(1);
    client.send('pair');
    expect(await client.waitForClose()).toMatchObject({ code: ClientCloseCode.MessageGap });
    expect(client.received).toEqual(['first']);
  });
});

describe('a client frame for a request the runner does not know (H8)', () => {
  it('is answered with an explicit close, 4500, never silence', async () => {
    const actor = await createActor(api, { name: 'wire', key: 'forgotten-request' });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('first');
    await client.waitForMessages(1);
    // The actor ends the connection, but its close never reaches the gateway: the socket stays
    // open there, and the next message is for a request the runner no longer knows.
    client.send('forget me');
    client.send('anyone there?');
    expect(await client.waitForClose()).toMatchObject({ code: ClientCloseCode.UnknownConnection });
    const state = (await actorRequest<{ received: string[] }>(stack.gatewayUrl, actor.actorId, '/')).body;
    expect(state.received).toEqual(['first', 'forget me']);
  });
});

describe('continue-as-new with signals in flight', () => {
  it('loses no wake and no runner event: every message processed once, every client answered', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'busy-history', input: { sleepAfterMs: 600_000 } });
    const clients = await Promise.all([0, 1, 2].map(() => TestClient.connect(stack.gatewayUrl, actor.actorId)));
    let sent = 0;
    const round = async (): Promise<void> => {
      // A sleep request and, right behind it, messages that wake the actor again (each a signal),
      // and an HTTP request: the workflow is busy with signals whenever it continues as new.
      const sleeping = api.sleep(actor.actorId);
      clients.forEach((c, i) => c.send(`m${sent}-${i}`));
      sent += 1;
      const hit = actorRequest(stack.gatewayUrl, actor.actorId, '/hit', { method: 'POST' });
      expect((await sleeping).status).toBe(202);
      expect((await hit).status).toBe(200);
      await Promise.all(clients.map((c) => c.waitForMessages(sent, 30_000)));
    };

    const runs = async (): Promise<number> => (await actorHistories(stack.temporal, actor.actorId)).length;
    while ((await runs()) < 3) {
      await round();
      expect(sent, 'rounds before the third run').toBeLessThan(80);
    }
    // One more round across the last boundary.
    await round();

    for (const [i, client] of clients.entries()) {
      expect(client.isClosed).toBeNull();
      expect(client.json<{ echo: string }>().map((m) => m.echo)).toEqual(
        Array.from({ length: sent }, (_, r) => `m${r}-${i}`),
      );
    }
    const state = await waitFor(
      async () => {
        const s = (
          await actorRequest<{ received: { text: string }[]; hits: number }>(stack.gatewayUrl, actor.actorId, '/state')
        ).body;
        return s.hits >= sent ? s : undefined;
      },
      { timeoutMs: 10_000, message: 'every hit counted' },
    );
    expect(state.hits).toBe(sent);
    expect(state.received).toHaveLength(sent * clients.length);
    expect(new Set(state.received.map((r) => r.text)).size).toBe(sent * clients.length);
    for (const c of clients) c.close();
  });
});
