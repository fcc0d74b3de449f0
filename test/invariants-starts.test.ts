/**
 * DESIGN §1 for the start reasons start-snapshot.test.ts does not reach: `drain`, `alarm` and
 * `threshold`. Each start's snapshot is the one it read (once) and the StartActor the runner
 * applied carries exactly it; the hibernatable socket of a real client survives the start.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeProcess } from '../dev/processes.js';
import type { HibernatingRequestRef } from '../src/protocol/runner-protocol.js';
import { actorRequest, appliedCommands, createActor, waitForActor, type Api } from './harness/actors.js';
import { activityCalls, actorHistories, recordedStarts, type RecordedStart } from './harness/history.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';

const START_THRESHOLD_MS = 3000;
let stack: TestStack;
let api: Api;

beforeAll(async () => {
  stack = await createTestStack({
    env: {
      DORMOUSE_RUNNER_PING_MS: '300',
      DORMOUSE_RUNNER_LOST_MS: '2000',
      DORMOUSE_REAPER_INTERVAL_MS: '500',
      DORMOUSE_BACKOFF_BASE_MS: '200',
      DORMOUSE_START_THRESHOLD_MS: String(START_THRESHOLD_MS),
      // The runners log every command they apply (appliedCommands reads it).
      DORMOUSE_LOG_LEVEL: 'debug',
    },
    runners: [
      { name: 'runner-b', env: { PROBE_RUNNER_NAME: 'b' } },
      { name: 'runner-c', env: { PROBE_RUNNER_NAME: 'c' } },
    ],
  });
  api = actorsApi(stack.gatewayUrl);
  // A live gateway of its own for rows the test seeds (start-snapshot.test.ts does the same).
  await stack.db.query(
    "INSERT INTO gateways (gateway_id, address, last_ping_at) VALUES ('gw-seeded', 'test', now() + interval '1 hour')",
  );
});
afterAll(() => stack?.stop());

async function tableNow(actorId: string): Promise<HibernatingRequestRef[]> {
  const { rows } = await stack.db.query<{ gateway_id: string; request_id: string }>(
    'SELECT gateway_id, request_id FROM hibernating_requests WHERE actor_id = $1 ORDER BY opened_at, gateway_id, request_id',
    [actorId],
  );
  return rows.map((r) => ({ gatewayId: r.gateway_id, requestId: r.request_id }));
}

async function startsRecorded(actorId: string): Promise<RecordedStart[]> {
  return recordedStarts(activityCalls(await actorHistories(stack.temporal, actorId)));
}

/** Every StartActor the runners applied for the actor. */
async function startsApplied(actorId: string) {
  const applied = (await Promise.all(stack.runners.map((r) => appliedCommands(r, actorId)))).flat();
  return applied.flatMap((a) => (a.command.kind === 'startActor' ? [a.command] : []));
}

/** The recorded start of `generation` has `reason`, read one snapshot equal to `expected`, and sent exactly it. */
async function expectStart(
  actorId: string,
  generation: number,
  reason: string,
  expected: HibernatingRequestRef[],
): Promise<void> {
  const recorded = await startsRecorded(actorId);
  const start = recorded.find((s) => s.generation === generation);
  expect(start, `start of generation ${generation}`).toBeDefined();
  expect(start!.reason).toBe(reason);
  expect(start!.snapshotReads).toBe(1);
  expect(start!.snapshot).toEqual(expected);
  expect(start!.command.hibernatingRequests).toEqual(expected);
  const applied = (await startsApplied(actorId)).filter((c) => c.generation === generation);
  expect(applied).toEqual([start!.command]);
}

/** A hibernatable client that has talked to the actor once; its row is in the table (H1). */
async function connectedClient(actorId: string): Promise<TestClient> {
  const client = await TestClient.connect(stack.gatewayUrl, actorId);
  client.send('hello');
  await client.waitForMessages(1);
  return client;
}

const hostOf = async (actorId: string): Promise<string> =>
  (await actorRequest<{ runner: string }>(stack.gatewayUrl, actorId, '/state')).body.runner;

describe('a start with reason drain', () => {
  it('follows a runner draining on SIGTERM and carries the snapshot of the socket it moves', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'drained', input: { sleepAfterMs: 600_000 } });
    const client = await connectedClient(actor.actorId);
    const expected = await tableNow(actor.actorId);
    expect(expected).toHaveLength(1);

    const host = await hostOf(actor.actorId);
    const drained = stack.runners.find((r) => r.name === `runner-${host}`) as NodeProcess;
    drained.kill('SIGTERM');
    expect((await drained.exited).code).toBe(0);
    await waitForActor(api, actor.actorId, (a) => a.state === 'running' && a.generation === 2, 'moved by the drain');

    expect((await startsRecorded(actor.actorId)).map((s) => s.reason)).toEqual(['create', 'drain']);
    await expectStart(actor.actorId, 2, 'drain', expected);
    expect(await hostOf(actor.actorId)).not.toBe(host);
    // The socket stayed open through the move and reaches the new generation.
    client.send('after the drain');
    const [, echo] = await client.waitForMessages(2);
    expect(JSON.parse(echo!)).toMatchObject({ echo: 'after the drain', n: 2 });
    expect(client.isClosed).toBeNull();
    client.close();

    // Capacity for the next tests.
    await stack.startRunner({ name: 'runner-d', env: { PROBE_RUNNER_NAME: 'd' } });
  });
});

describe('a start with reason alarm', () => {
  it('carries the snapshot of the socket that hibernated while the actor slept', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'alarmed', input: { sleepAfterMs: 600_000 } });
    const client = await connectedClient(actor.actorId);
    await actorRequest(stack.gatewayUrl, actor.actorId, '/alarm', { json: { inMs: 1500 } });
    expect((await api.sleep(actor.actorId)).status).toBe(202);
    await waitForActor(api, actor.actorId, (a) => a.state === 'sleeping', 'asleep before the alarm');
    const expected = await tableNow(actor.actorId);
    expect(expected).toHaveLength(1);

    await waitForActor(api, actor.actorId, (a) => a.state === 'running' && a.generation === 2, 'woken by the alarm');
    expect((await startsRecorded(actor.actorId)).map((s) => s.reason)).toEqual(['create', 'alarm']);
    await expectStart(actor.actorId, 2, 'alarm', expected);
    // The client's hibernated socket was restored by that start, without a message of its own.
    const state = (
      await actorRequest<{ connections: string[]; connects: number }>(stack.gatewayUrl, actor.actorId, '/state')
    ).body;
    expect(state.connections).toHaveLength(1);
    expect(state.connects).toBe(1);
    client.send('after the alarm');
    const [, echo] = await client.waitForMessages(2);
    expect(JSON.parse(echo!)).toMatchObject({ echo: 'after the alarm', n: 2 });
    client.close();
  });
});

describe('a start with reason threshold', () => {
  it('reads a fresh snapshot: it holds a request that hibernated after the lost start', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'threshold', input: { hangStarts: 1 } });
    // The first start's snapshot is recorded before the row exists.
    await waitFor(
      async () => {
        try {
          return (await startsRecorded(actor.actorId)).length === 1;
        } catch {
          return false; // its snapshot read has not completed yet
        }
      },
      { timeoutMs: 10_000, message: 'the first start recorded' },
    );
    await stack.db.query('INSERT INTO hibernating_requests (gateway_id, request_id, actor_id) VALUES ($1, $2, $3)', [
      'gw-seeded',
      randomUUID(),
      actor.actorId,
    ]);
    const expected = await tableNow(actor.actorId);
    expect(expected).toHaveLength(1);

    await waitForActor(
      api,
      actor.actorId,
      (a) => a.state === 'running' && a.generation === 2,
      'started again after the threshold',
      START_THRESHOLD_MS * 5,
    );
    const recorded = await startsRecorded(actor.actorId);
    expect(recorded.map((s) => s.reason)).toEqual(['create', 'threshold']);
    expect(recorded[0]!.snapshot).toEqual([]);
    await expectStart(actor.actorId, 2, 'threshold', expected);
  });
});
