/**
 * Things going wrong, on real processes: an actor that crashes restarts after a backoff (or
 * sleeps, or is destroyed, by its crash policy); a runner killed with SIGKILL loses its actors
 * to the other runner; a start never reported running becomes a new generation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InsertAndSendInput } from '../src/activities/start.js';
import { actorWorkflowId } from '../src/workflows/actor-api.js';
import { actorRequest, createActor, getActor, waitForActor, type Api } from './harness/actors.js';
import { activityCalls, actorHistories, recordHistories, recordedStarts } from './harness/history.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';

let stack: TestStack;
let api: Api;

const timings = {
  DORMOUSE_BACKOFF_BASE_MS: '300',
  DORMOUSE_START_THRESHOLD_MS: '2000',
  DORMOUSE_RUNNER_PING_MS: '300',
  DORMOUSE_RUNNER_LOST_MS: '2000',
  DORMOUSE_REAPER_INTERVAL_MS: '500',
};

beforeAll(async () => {
  stack = await createTestStack({
    env: timings,
    runners: [
      { name: 'runner-a', env: { PROBE_RUNNER_NAME: 'a' } },
      { name: 'runner-b', env: { PROBE_RUNNER_NAME: 'b' } },
    ],
  });
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

type ProbeState = { starts: number; hits: number; generation: number; runner: string };

describe('a crashing actor', () => {
  it('restarts after a backoff, with its state', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'crashy' });
    await actorRequest(stack.gatewayUrl, actor.actorId, '/hit', { method: 'POST' });
    const crashed = await actorRequest(stack.gatewayUrl, actor.actorId, '/crash', { method: 'POST' });
    expect(crashed.status).toBe(500);

    const restarted = await waitForActor(
      api,
      actor.actorId,
      (a) => a.state === 'running' && a.generation === 2,
      'restarted',
    );
    expect(restarted).toMatchObject({ crashCount: 1, lastError: 'probe crashed on request' });
    const state = await actorRequest<ProbeState>(stack.gatewayUrl, actor.actorId, '/state');
    expect(state.body).toMatchObject({ starts: 2, hits: 1, generation: 2 });

    const starts = recordedStarts(activityCalls(await actorHistories(stack.temporal, actor.actorId)));
    expect(starts.map((s) => s.reason)).toEqual(['create', 'crash']);
    await recordHistories(stack.temporal, actor.actorId, 'crash-restart');
  });

  it('backs off longer for each crash in a row', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'crash-loop', input: { failStarts: 3 } });
    const running = await waitForActor(
      api,
      actor.actorId,
      (a) => a.state === 'running',
      'running after three failed starts',
    );
    expect(running).toMatchObject({ generation: 4, crashCount: 3 });
    // Backoff n waits base·2^(n-1) ±25 % from the crash (recorded as `backoff`) to the next
    // allocation: at least 225, 450 and 900 ms here.
    const calls = activityCalls(await actorHistories(stack.temporal, actor.actorId));
    const waits: number[] = [];
    calls.forEach((call, i) => {
      if (call.summary !== 'record backoff') return;
      const next = calls.slice(i + 1).find((c) => c.name === 'allocateAndSnapshot' || c.name === 'allocateActor')!;
      waits.push(next.scheduledAt - call.scheduledAt);
    });
    expect(waits).toHaveLength(3);
    expect(waits[0]).toBeGreaterThanOrEqual(225);
    expect(waits[1]).toBeGreaterThanOrEqual(450);
    expect(waits[2]).toBeGreaterThanOrEqual(900);
    expect(waits[2]!).toBeLessThan(3000);
  });

  it('sleeps instead, under the sleep policy', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'crash-sleeps', crashPolicy: 'sleep' });
    await waitForActor(api, actor.actorId, (a) => a.state === 'running', 'running');
    await actorRequest(stack.gatewayUrl, actor.actorId, '/crash', { method: 'POST' });
    await waitForActor(api, actor.actorId, (a) => a.state === 'sleeping', 'asleep after the crash');
    const woken = await actorRequest<ProbeState>(stack.gatewayUrl, actor.actorId, '/state');
    expect(woken.body).toMatchObject({ starts: 2, generation: 2 });
  });

  it('is destroyed instead, under the destroy policy', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'crash-destroys', crashPolicy: 'destroy' });
    await waitForActor(api, actor.actorId, (a) => a.state === 'running', 'running');
    await actorRequest(stack.gatewayUrl, actor.actorId, '/crash', { method: 'POST' });
    await stack.temporal.workflow.getHandle(actorWorkflowId(actor.actorId)).result();
    expect(await getActor(api, actor.actorId)).toMatchObject({
      state: 'destroyed',
      lastError: 'probe crashed on request',
    });
  });
});

describe('a start never reported running', () => {
  it('becomes a new generation after the start threshold', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'hangs', input: { hangStarts: 1 } });
    const running = await waitForActor(
      api,
      actor.actorId,
      (a) => a.state === 'running',
      'running on a second start',
      20_000,
    );
    expect(running.generation).toBe(2);
    const starts = recordedStarts(activityCalls(await actorHistories(stack.temporal, actor.actorId)));
    expect(starts.map((s) => s.reason)).toEqual(['create', 'threshold']);
    // The lost start was told to stop, so it cannot come back to life.
    const calls = activityCalls(await actorHistories(stack.temporal, actor.actorId));
    const stops = calls.filter(
      (c) => c.name === 'insertAndSendCommands' && JSON.stringify(c.input).includes('"stopActor"'),
    );
    expect(
      stops.map((c) => (c.input as { commands: { generation: number; command: { reason: string } }[] }).commands[0]),
    ).toMatchObject([{ generation: 1, command: { reason: 'stale' } }]);
    await recordHistories(stack.temporal, actor.actorId, 'start-threshold');
  });
});

describe('a runner killed with SIGKILL', () => {
  it('loses its actors to the other runner', async () => {
    const actors = await Promise.all(
      ['m1', 'm2', 'm3', 'm4'].map((key) => createActor(api, { name: 'probe', key: `moving-${key}` })),
    );
    const before = await Promise.all(
      actors.map(async (a) => {
        await actorRequest(stack.gatewayUrl, a.actorId, '/hit', { method: 'POST' });
        return (await actorRequest<ProbeState>(stack.gatewayUrl, a.actorId, '/state')).body;
      }),
    );
    // Kill the runner hosting the first actor; every actor it hosted must move to the other.
    const victimName = before[0]!.runner;
    const victim = stack.runners.find((r) => r.name === `runner-${victimName}`)!;
    const survivor = victimName === 'a' ? 'b' : 'a';
    const moved = actors.filter((_, i) => before[i]!.runner === victimName);
    victim.kill('SIGKILL');
    await victim.exited;

    for (const a of moved) {
      await waitForActor(
        api,
        a.actorId,
        (x) => x.state === 'running' && x.generation === 2,
        'running again elsewhere',
        20_000,
      );
      const state = await actorRequest<ProbeState>(stack.gatewayUrl, a.actorId, '/state');
      expect(state.body).toMatchObject({ runner: survivor, hits: 1, starts: 2, generation: 2 });
      const calls = activityCalls(await actorHistories(stack.temporal, a.actorId));
      const starts = recordedStarts(calls);
      expect(starts.map((s) => s.reason)).toEqual(['create', 'lost']);
      // The lost runner is told to drop generation 1, should it come back (issue 8 §2).
      const sent = calls
        .filter((c) => c.name === 'insertAndSendCommands')
        .map((c) => c.input as InsertAndSendInput)
        .flatMap(({ runnerId, commands }) =>
          commands.map((e) => ({ runnerId, generation: e.generation, command: e.command })),
        );
      expect(sent.filter((e) => e.command.kind === 'stopActor')).toEqual([
        {
          runnerId: sent[0]!.runnerId, // where generation 1 started
          generation: 1,
          command: { kind: 'stopActor', actorId: a.actorId, generation: 1, reason: 'lost' },
        },
      ]);
    }
    const lost = await stack.db.query('SELECT lost_at FROM runners WHERE lost_at IS NOT NULL');
    expect(lost.rowCount).toBe(1);
    await recordHistories(stack.temporal, moved[0]!.actorId, 'runner-lost-drops-old-generation');
  });
});
