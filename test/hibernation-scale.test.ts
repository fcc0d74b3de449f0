/**
 * A thousand hibernating WebSockets on one actor are all restored by one start: one snapshot
 * holds them all, and one message after the wake reaches every one of them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { actorRequest, createActor, waitForActor, type Api } from './harness/actors.js';
import { activityCalls, actorHistories, recordedStarts } from './harness/history.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';

const SOCKETS = 1000;
let stack: TestStack;
let api: Api;

beforeAll(async () => {
  stack = await createTestStack();
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

async function connectAll(actorId: string): Promise<TestClient[]> {
  const clients: TestClient[] = [];
  for (let i = 0; i < SOCKETS; i += 100) {
    clients.push(
      ...(await Promise.all(
        Array.from({ length: 100 }, () => TestClient.connect(stack.gatewayUrl, actorId, '?name=crowd', 30_000)),
      )),
    );
  }
  return clients;
}

describe('a thousand hibernating sockets', () => {
  it('are all restored by one start', async () => {
    const room = await createActor(api, { name: 'chat', key: 'stadium', input: { sleepAfterMs: 600_000 } });
    const clients = await connectAll(room.actorId);
    const registered = () =>
      stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM hibernating_requests WHERE actor_id = $1', [
        room.actorId,
      ]);
    await waitFor(async () => (await registered()).rows[0]?.n === SOCKETS, {
      timeoutMs: 60_000,
      message: `${SOCKETS} rows`,
    });

    await api.sleep(room.actorId);
    await waitForActor(api, room.actorId, (a) => a.state === 'sleeping', 'asleep');
    expect(clients.every((c) => c.isClosed === null)).toBe(true);

    clients[0]!.send('everyone here?');
    await waitFor(() => clients.every((c) => c.received.length === 1), {
      timeoutMs: 60_000,
      message: 'the broadcast reached every socket',
    });
    expect(new Set(clients.map((c) => c.received[0])).size).toBe(1);
    expect(JSON.parse(clients[0]!.received[0]!)).toEqual({ seq: 1, from: 'crowd', text: 'everyone here?' });

    const state = (
      await actorRequest<{ connections: number; generation: number }>(stack.gatewayUrl, room.actorId, '/state')
    ).body;
    expect(state).toMatchObject({ connections: SOCKETS, generation: 2 });
    const starts = recordedStarts(activityCalls(await actorHistories(stack.temporal, room.actorId)));
    expect(starts.map((s) => s.snapshot.length)).toEqual([0, SOCKETS]);
    expect(starts[1]!.sendSummary).toContain(`with ${SOCKETS} hibernating requests`);
    for (const c of clients) c.terminate();
  });
});
