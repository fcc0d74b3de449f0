/**
 * The actor lifecycle end to end, on real parts: a Temporal dev server, Postgres, and worker,
 * gateway and runner processes. Create → running → answered; get-or-create under contention;
 * idle sleep and wake with state kept; explicit sleep, wake, reschedule; alarms; destroy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { actorWorkflowId } from '../src/workflows/actor-api.js';
import { actorRequest, createActor, getActor, waitForActor, type Api, type ChatView } from './harness/actors.js';
import { activityCalls, actorHistories, recordHistories, recordedStarts } from './harness/history.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';

let stack: TestStack;
let api: Api;

beforeAll(async () => {
  stack = await createTestStack({ runners: [{ name: 'runner-a' }, { name: 'runner-b' }] });
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

describe('an actor', () => {
  it('is created, runs, and answers HTTP through the gateway', async () => {
    const actor = await createActor(api, { name: 'chat', key: 'hello' });
    expect(actor).toMatchObject({ name: 'chat', key: 'hello', generation: 0, runnerId: null });
    expect(typeof actor.createdAt).toBe('string');

    const state = await actorRequest<ChatView>(stack.gatewayUrl, actor.actorId, '/state');
    expect(state).toEqual({ status: 200, body: { seq: 0, connections: 0, generation: 1 } });
    // The first reply may come before the registry records running: the gateway believed the
    // runner's own report of its start (src/gateway/actor-watch.ts). The registry follows.
    const running = await waitForActor(api, actor.actorId, (a) => a.state === 'running', 'recorded running');
    expect(running).toMatchObject({ state: 'running', generation: 1 });
    expect(running.runnerId).toMatch(/^[0-9a-f-]{36}$/);

    const posted = await actorRequest(stack.gatewayUrl, actor.actorId, '/messages', {
      json: { from: 'ann', text: 'hi' },
    });
    expect(posted).toEqual({ status: 201, body: { seq: 1, from: 'ann', text: 'hi' } });

    // The operator's view: the start is in the history with its summary.
    const starts = recordedStarts(activityCalls(await actorHistories(stack.temporal, actor.actorId)));
    expect(starts).toHaveLength(1);
    expect(starts[0]).toMatchObject({ generation: 1, reason: 'create', snapshot: [] });
    expect(starts[0]!.sendSummary).toBe(
      `start generation 1 on runner ${running.runnerId} (create) with 0 hibernating requests`,
    );
  });

  it('is one actor for ten concurrent get-or-create calls on one key', async () => {
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => api.getOrCreate({ name: 'chat', key: 'contended' })),
    );
    const ids = new Set(responses.map((r) => ('actor' in r.body ? r.body.actor.actorId : `error ${r.status}`)));
    expect(ids.size).toBe(1);
    expect(responses.filter((r) => r.status === 201)).toHaveLength(1);
    expect(responses.filter((r) => r.status === 200)).toHaveLength(9);

    const [actorId] = [...ids] as [string];
    const { rows } = await stack.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM actors WHERE name = 'chat' AND key = 'contended'",
    );
    expect(rows[0]?.n).toBe(1);
    const state = await actorRequest<ChatView>(stack.gatewayUrl, actorId, '/state');
    expect(state.status).toBe(200);
    const list = await api.list({ name: 'chat', key: 'contended' });
    expect('actors' in list.body && list.body.actors.map((a) => a.actorId)).toEqual([actorId]);
  });

  it('refuses a second create on a live key with 409, changing nothing', async () => {
    const first = await createActor(api, { name: 'chat', key: 'taken' });
    const second = await api.create({ name: 'chat', key: 'taken' });
    expect(second.status).toBe(409);
    expect(second.body).toMatchObject({ error: { code: 'actor_exists' } });
    const list = await api.list({ name: 'chat', key: 'taken' });
    expect('actors' in list.body && list.body.actors.map((a) => a.actorId)).toEqual([first.actorId]);
  });

  it('sleeps when idle, wakes on a request, and keeps its state', async () => {
    const actor = await createActor(api, { name: 'chat', key: 'sleepy', input: { sleepAfterMs: 500 } });
    await actorRequest(stack.gatewayUrl, actor.actorId, '/messages', { json: { text: 'one' } });
    await actorRequest(stack.gatewayUrl, actor.actorId, '/messages', { json: { text: 'two' } });

    await waitForActor(api, actor.actorId, (a) => a.state === 'sleeping', 'asleep after 500 ms idle');
    const asleep = await getActor(api, actor.actorId);
    expect(asleep).toMatchObject({ generation: 1, runnerId: null });
    // The Temporal UI tells the same story: asleep, on no runner.
    const described = await stack.temporal.workflow.getHandle(actorWorkflowId(actor.actorId)).describe();
    expect(described.searchAttributes).toMatchObject({ ActorState: ['sleeping'], ActorGeneration: [1] });
    expect(described.searchAttributes.RunnerId).toBeUndefined();

    const woken = await actorRequest<ChatView>(stack.gatewayUrl, actor.actorId, '/state');
    expect(woken).toEqual({ status: 200, body: { seq: 2, connections: 0, generation: 2 } });
    const third = await actorRequest(stack.gatewayUrl, actor.actorId, '/messages', { json: { text: 'three' } });
    expect(third.body).toMatchObject({ seq: 3 });

    const starts = recordedStarts(activityCalls(await actorHistories(stack.temporal, actor.actorId)));
    expect(starts.map((s) => s.reason)).toEqual(['create', 'wake']);
    await recordHistories(stack.temporal, actor.actorId, 'sleep-wake');
  });

  it('sleeps, wakes and moves on request', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'commanded' });
    await waitForActor(api, actor.actorId, (a) => a.state === 'running', 'running');

    expect((await api.sleep(actor.actorId)).status).toBe(202);
    await waitForActor(api, actor.actorId, (a) => a.state === 'sleeping', 'asleep on request');

    expect((await api.wake(actor.actorId)).status).toBe(202);
    await waitForActor(api, actor.actorId, (a) => a.state === 'running' && a.generation === 2, 'awake on request');

    expect((await api.reschedule(actor.actorId)).status).toBe(202);
    const moved = await waitForActor(
      api,
      actor.actorId,
      (a) => a.state === 'running' && a.generation === 3,
      'rescheduled',
    );
    expect(moved.runnerId).not.toBeNull();

    const state = await actorRequest<{ starts: number }>(stack.gatewayUrl, actor.actorId, '/state');
    expect(state.body.starts).toBe(3);
    const starts = recordedStarts(activityCalls(await actorHistories(stack.temporal, actor.actorId)));
    expect(starts.map((s) => s.reason)).toEqual(['create', 'wake', 'reschedule']);
    await recordHistories(stack.temporal, actor.actorId, 'sleep-wake-reschedule');
  });

  it('is woken from sleep by its alarm', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'alarmed' });
    await actorRequest(stack.gatewayUrl, actor.actorId, '/alarm', { json: { inMs: 1500 } });
    expect((await api.sleep(actor.actorId)).status).toBe(202);
    await waitForActor(api, actor.actorId, (a) => a.state === 'sleeping', 'asleep before the alarm');

    await waitForActor(api, actor.actorId, (a) => a.state === 'running' && a.generation === 2, 'woken by the alarm');
    const state = await waitFor(
      async () => {
        const s = await actorRequest<{ alarms: number }>(stack.gatewayUrl, actor.actorId, '/state');
        return s.body.alarms === 1 ? s.body : undefined;
      },
      { timeoutMs: 10_000, message: 'onAlarm ran once' },
    );
    expect(state.alarms).toBe(1);
    const starts = recordedStarts(activityCalls(await actorHistories(stack.temporal, actor.actorId)));
    expect(starts.map((s) => s.reason)).toEqual(['create', 'alarm']);
    await recordHistories(stack.temporal, actor.actorId, 'alarm');
  });

  it('continues as new when the server suggests it, carrying everything', async () => {
    // The test server suggests continue-as-new after a few generations (global-setup.ts).
    const actor = await createActor(api, { name: 'probe', key: 'long-lived', input: { sleepAfterMs: 600_000 } });
    await waitForActor(api, actor.actorId, (a) => a.state === 'running', 'running');
    for (let generation = 2; generation <= 9; generation++) {
      await api.sleep(actor.actorId);
      await waitForActor(
        api,
        actor.actorId,
        (a) => a.state === 'sleeping',
        `asleep after generation ${generation - 1}`,
      );
      const woken = await actorRequest<{ starts: number; generation: number }>(
        stack.gatewayUrl,
        actor.actorId,
        '/state',
      );
      expect(woken.body).toMatchObject({ starts: generation, generation });
    }
    const runs = await actorHistories(stack.temporal, actor.actorId);
    expect(runs.length).toBeGreaterThanOrEqual(2);
    const starts = recordedStarts(activityCalls(runs));
    expect(starts.map((s) => s.generation)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const handle = stack.temporal.workflow.getHandle(actorWorkflowId(actor.actorId));
    // The reply may come before the workflow takes in the running report (the gateway believes
    // the runner's own, src/gateway/actor-watch.ts): the registry records it next.
    await waitForActor(api, actor.actorId, (a) => a.state === 'running', 'recorded running');
    expect(await handle.query<{ state: string; generation: number }>('state')).toMatchObject({
      state: 'running',
      generation: 9,
    });
    const described = await handle.describe();
    expect(described.searchAttributes).toMatchObject({
      ActorState: ['running'],
      ActorGeneration: [9],
      ActorName: ['probe'],
    });
    await recordHistories(stack.temporal, actor.actorId, 'continue-as-new');
  });

  it('is destroyed: the workflow ends, storage goes, the key is free again', async () => {
    const actor = await createActor(api, { name: 'chat', key: 'doomed' });
    await actorRequest(stack.gatewayUrl, actor.actorId, '/messages', { json: { text: 'remember me' } });
    const kvBefore = await stack.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM actor_kv WHERE actor_id = $1',
      [actor.actorId],
    );
    expect(kvBefore.rows[0]?.n).toBeGreaterThan(0);

    expect((await api.destroy(actor.actorId)).status).toBe(202);
    const handle = stack.temporal.workflow.getHandle(actorWorkflowId(actor.actorId));
    await handle.result();
    expect((await handle.describe()).status.name).toBe('COMPLETED');

    const destroyed = await getActor(api, actor.actorId);
    expect(destroyed).toMatchObject({ state: 'destroyed', runnerId: null });
    expect(destroyed.destroyedAt).not.toBeNull();
    const kvAfter = await stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM actor_kv WHERE actor_id = $1', [
      actor.actorId,
    ]);
    expect(kvAfter.rows[0]?.n).toBe(0);
    const slots = await stack.db.query<{ n: number }>('SELECT coalesce(sum(allocated), 0)::int AS n FROM runners');
    const placed = await stack.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM actors WHERE runner_id IS NOT NULL',
    );
    expect(slots.rows[0]?.n).toBe(placed.rows[0]?.n);

    // Gone for good, whatever is asked of it: 410 from the tunnel and the management API alike.
    const requestToDestroyed = await actorRequest(stack.gatewayUrl, actor.actorId, '/state');
    expect(requestToDestroyed.status).toBe(410);
    const wakeDestroyed = await api.wake(actor.actorId);
    expect(wakeDestroyed.status).toBe(410);
    expect(wakeDestroyed.body).toMatchObject({ error: { code: 'actor_destroyed' } });

    const again = await api.getOrCreate({ name: 'chat', key: 'doomed' });
    expect(again.status).toBe(201);
    const fresh = 'actor' in again.body ? again.body.actor : undefined;
    expect(fresh?.actorId).not.toBe(actor.actorId);
    const freshState = await actorRequest<ChatView>(stack.gatewayUrl, fresh!.actorId, '/state');
    expect(freshState.body.seq).toBe(0);
    await recordHistories(stack.temporal, actor.actorId, 'destroy');
  });

  it('is destroyed when it asks to be', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'self-destruct' });
    await actorRequest(stack.gatewayUrl, actor.actorId, '/destroy', { method: 'POST' });
    await stack.temporal.workflow.getHandle(actorWorkflowId(actor.actorId)).result();
    expect(await getActor(api, actor.actorId)).toMatchObject({ state: 'destroyed' });
  });
});
