/**
 * A start whose snapshot goes stale before the runner gets it (DESIGN §1, staleness repaired):
 * the runner is frozen (SIGSTOP) while its StartActor waits; meanwhile one hibernating client
 * leaves and a new one arrives. When the runner thaws and starts the actor from the stale
 * snapshot, the gateway and the actor converge on the right connections, with nothing dangling.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { actorRequest, createActor, waitForActor, type Api } from './harness/actors.js';
import { activityCalls, actorHistories, recordedStarts } from './harness/history.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';

let stack: TestStack;
let api: Api;

beforeAll(async () => {
  // One runner, and thresholds long enough that a few seconds frozen is not "lost".
  stack = await createTestStack({ env: { DORMOUSE_RUNNER_LOST_MS: '60000', DORMOUSE_START_THRESHOLD_MS: '60000' } });
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

type ProbeState = {
  disconnects: Record<string, number>;
  connections: string[];
  received: { conn: string; text: string }[];
  generation: number;
};

const rows = async (actorId: string) =>
  (
    await stack.db.query<{ request_id: string }>(
      'SELECT request_id FROM hibernating_requests WHERE actor_id = $1 ORDER BY request_id',
      [actorId],
    )
  ).rows.map((r) => r.request_id);

describe('a queued StartActor whose snapshot went stale', () => {
  it('ends with the right connections when its runner comes back', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'stale', input: { sleepAfterMs: 60_000 } });
    const a = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    const b = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    a.send('a1');
    b.send('b1');
    await a.waitForMessages(1);
    await b.waitForMessages(1);
    const ids = (await actorRequest<ProbeState>(stack.gatewayUrl, actor.actorId, '/state')).body.received;
    const idA = ids.find((r) => r.text === 'a1')!.conn;
    const idB = ids.find((r) => r.text === 'b1')!.conn;
    await api.sleep(actor.actorId);
    await waitForActor(api, actor.actorId, (x) => x.state === 'sleeping', 'asleep');

    const runner = stack.runners[0]!;
    runner.kill('SIGSTOP');
    try {
      // The start is allocated, its snapshot {A, B} taken and its command queued for the frozen runner.
      expect((await api.wake(actor.actorId)).status).toBe(202);
      await waitFor(
        async () =>
          (
            await stack.db.query(
              "SELECT 1 FROM runner_commands WHERE actor_id = $1 AND generation = 2 AND payload->>'kind' = 'startActor'",
              [actor.actorId],
            )
          ).rowCount === 1,
        { timeoutMs: 10_000, message: 'StartActor queued' },
      );
      // Then A leaves and C arrives.
      a.close();
      await waitFor(async () => (await rows(actor.actorId)).join() === idB, {
        timeoutMs: 5_000,
        message: "A's row deleted",
      });
    } finally {
      runner.kill('SIGCONT');
    }
    const c = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    c.send('c1');
    await c.waitForMessages(1);
    b.send('b2');
    await b.waitForMessages(2);

    const starts = recordedStarts(activityCalls(await actorHistories(stack.temporal, actor.actorId)));
    expect(starts[1]!.snapshot.map((r) => r.requestId).sort()).toEqual([idA, idB].sort());
    const state = (await actorRequest<ProbeState>(stack.gatewayUrl, actor.actorId, '/state')).body;
    const idC = state.received.find((r) => r.text === 'c1')!.conn;
    expect(state.generation).toBe(2);
    expect([...state.connections].sort()).toEqual([idB, idC].sort());
    expect(state.disconnects).toEqual({ [idA]: 1 });
    expect(await rows(actor.actorId)).toEqual([idB, idC].sort());
    b.close();
    c.close();
  });
});
