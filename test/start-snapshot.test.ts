/**
 * DESIGN §1, the rule that names the project: a start reads the hibernating requests once, and
 * the StartActor carrying that snapshot travels in the input of `insertAndSendCommands`, so a
 * retry sends byte-for-byte the same command even when the table changed in between.
 *
 * The worker runs in this process so that a fault hook can fail an attempt at an exact point.
 */
import { randomUUID } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Faults } from '../src/activities/index.js';
import type { NodeProcess } from '../dev/processes.js';
import type { HibernatingRequestRef } from '../src/protocol/runner-protocol.js';
import type { RunningWorker } from '../src/worker.js';
import { actorRequest, appliedCommands, createActor, waitForActor, type Api } from './harness/actors.js';
import { activityCalls, actorHistories, recordHistories, recordedStarts } from './harness/history.js';
import { actorsApi } from './harness/http.js';
import { startInProcessWorker } from './harness/in-process-worker.js';
import { createTestStack, type TestStack } from './harness/stack.js';

let stack: TestStack;
let api: Api;
let worker: RunningWorker;
/** The fault the hook injects, when armed: fail the first attempt after changing the table. */
let armed: { actorId: string; generation: number; change: () => Promise<void> } | null = null;
const faultsFired: { actorId: string; generation: number; attempt: number }[] = [];

const faults: Faults = {
  async beforeInsertAndSendCommands({ attempt, input }) {
    const start = input.commands.find((c) => c.command.kind === 'startActor');
    if (!armed || !start || start.actorId !== armed.actorId || start.generation !== armed.generation || attempt !== 1)
      return;
    faultsFired.push({ actorId: start.actorId, generation: start.generation, attempt });
    await armed.change();
    throw new Error('injected fault: first attempt of insertAndSendCommands fails');
  },
};

const env = {
  DORMOUSE_RUNNER_PING_MS: '300',
  DORMOUSE_RUNNER_LOST_MS: '2000',
  DORMOUSE_REAPER_INTERVAL_MS: '500',
  DORMOUSE_BACKOFF_BASE_MS: '200',
  DORMOUSE_LOG_LEVEL: 'debug',
};

beforeAll(async () => {
  stack = await createTestStack({ workers: 0, runners: [], env });
  api = actorsApi(stack.gatewayUrl);
  worker = await startInProcessWorker(stack, faults, env);
  // A live gateway (beyond the stack's own) holding hibernating requests, and a dead one.
  await stack.db.query("INSERT INTO gateways (gateway_id, address) VALUES ('gw-live', 'test')");
  await stack.db.query(
    "INSERT INTO gateways (gateway_id, address, last_ping_at) VALUES ('gw-dead', 'test', now() - interval '1 hour')",
  );
});
afterAll(async () => {
  await worker?.shutdown();
  await stack?.stop();
});

async function hibernate(actorId: string, gatewayId = 'gw-live'): Promise<HibernatingRequestRef> {
  const requestId = randomUUID();
  await stack.db.query('INSERT INTO hibernating_requests (gateway_id, request_id, actor_id) VALUES ($1, $2, $3)', [
    gatewayId,
    requestId,
    actorId,
  ]);
  return { gatewayId, requestId };
}

async function close(ref: HibernatingRequestRef): Promise<void> {
  await stack.db.query('DELETE FROM hibernating_requests WHERE gateway_id = $1 AND request_id = $2', [
    ref.gatewayId,
    ref.requestId,
  ]);
}

async function tableNow(actorId: string): Promise<HibernatingRequestRef[]> {
  const { rows } = await stack.db.query<{ gateway_id: string; request_id: string }>(
    'SELECT gateway_id, request_id FROM hibernating_requests WHERE actor_id = $1 ORDER BY opened_at, gateway_id, request_id',
    [actorId],
  );
  return rows.map((r) => ({ gatewayId: r.gateway_id, requestId: r.request_id }));
}

/** The StartActor commands a runner applied for an actor, by generation. */
async function startsApplied(runners: NodeProcess[], actorId: string) {
  const applied = (await Promise.all(runners.map((r) => appliedCommands(r, actorId)))).flat();
  return applied.flatMap((a) => (a.command.kind === 'startActor' ? [a.command] : []));
}

async function startsRecorded(actorId: string) {
  return recordedStarts(activityCalls(await actorHistories(stack.temporal, actorId)));
}

describe('the StartActor snapshot', () => {
  it('is sent exactly as recorded, once, when the first attempt fails after the table changed', async () => {
    const runner = await stack.startRunner({ name: 'runner-a', env: { PROBE_RUNNER_NAME: 'a' } });
    const actor = await createActor(api, { name: 'probe', key: 'retried', input: { sleepAfterMs: 60_000 } });
    await waitForActor(api, actor.actorId, (a) => a.state === 'running', 'running');

    const a = await hibernate(actor.actorId);
    const b = await hibernate(actor.actorId);
    await hibernate(actor.actorId, 'gw-dead'); // never live: no snapshot may hold it (H3)
    expect((await api.sleep(actor.actorId)).status).toBe(202);
    await waitForActor(api, actor.actorId, (x) => x.state === 'sleeping', 'asleep');

    // Generation 2's first send fails, after a request closed and another hibernated.
    let c: HibernatingRequestRef | undefined;
    armed = {
      actorId: actor.actorId,
      generation: 2,
      change: async () => {
        await close(a);
        c = await hibernate(actor.actorId);
      },
    };
    expect((await api.wake(actor.actorId)).status).toBe(202);
    await waitForActor(
      api,
      actor.actorId,
      (x) => x.state === 'running' && x.generation === 2,
      'running after the retried send',
    );
    armed = null;
    expect(faultsFired).toEqual([{ actorId: actor.actorId, generation: 2, attempt: 1 }]);

    const recorded = (await startsRecorded(actor.actorId)).find((s) => s.generation === 2)!;
    expect(recorded.snapshot).toEqual([a, b]);
    expect(recorded.command.hibernatingRequests).toEqual([a, b]);
    expect(recorded.sendAttempts).toBe(2);
    // The table moved on; the command did not.
    expect(await tableNow(actor.actorId)).toEqual(expect.arrayContaining([b, c!]));

    const queued = await stack.db.query<{ payload: unknown }>(
      'SELECT payload FROM runner_commands WHERE actor_id = $1 AND generation = 2 AND idx = 0',
      [actor.actorId],
    );
    expect(queued.rows).toHaveLength(1);
    expect(queued.rows[0]?.payload).toEqual(recorded.command);

    const applied = (await startsApplied([runner], actor.actorId)).filter((s) => s.generation === 2);
    expect(applied).toEqual([recorded.command]);
    await recordHistories(stack.temporal, actor.actorId, 'snapshot-retry');
  });

  it('comes from the snapshot for every start reason', async () => {
    // No runner can host it yet: the create waits for capacity, which lets the test seed rows
    // for the first start before its snapshot is taken.
    for (const r of stack.runners) await r.stop();
    const actor = await createActor(api, { name: 'probe', key: 'every-reason', input: { sleepAfterMs: 60_000 } });
    const expected = new Map<number, HibernatingRequestRef[]>();
    const seed = async (generation: number) => {
      await hibernate(actor.actorId);
      expected.set(generation, await tableNow(actor.actorId));
    };

    await seed(1);
    const runnerB = await stack.startRunner({ name: 'runner-b', env: { PROBE_RUNNER_NAME: 'b' } });
    await waitForActor(api, actor.actorId, (x) => x.state === 'running' && x.generation === 1, 'created');

    await seed(2);
    await api.sleep(actor.actorId);
    await waitForActor(api, actor.actorId, (x) => x.state === 'sleeping', 'asleep');
    await api.wake(actor.actorId);
    await waitForActor(api, actor.actorId, (x) => x.state === 'running' && x.generation === 2, 'woken');

    await seed(3);
    await actorRequest(stack.gatewayUrl, actor.actorId, '/crash', { method: 'POST' });
    await waitForActor(
      api,
      actor.actorId,
      (x) => x.state === 'running' && x.generation === 3,
      'restarted after the crash',
    );

    await seed(4);
    const runnerC = await stack.startRunner({ name: 'runner-c', env: { PROBE_RUNNER_NAME: 'c' } });
    await api.reschedule(actor.actorId);
    await waitForActor(api, actor.actorId, (x) => x.state === 'running' && x.generation === 4, 'rescheduled');

    await seed(5);
    const host = (await actorRequest<{ runner: string }>(stack.gatewayUrl, actor.actorId, '/state')).body.runner;
    const victim = host === 'b' ? runnerB : runnerC;
    victim.kill('SIGKILL');
    await victim.exited;
    await waitForActor(
      api,
      actor.actorId,
      (x) => x.state === 'running' && x.generation === 5,
      'moved off the lost runner',
      20_000,
    );

    const recorded = await startsRecorded(actor.actorId);
    expect(recorded.map((s) => s.reason)).toEqual(['create', 'wake', 'crash', 'reschedule', 'lost']);
    const applied = await startsApplied([runnerB, runnerC], actor.actorId);
    for (const start of recorded) {
      expect(start.snapshotReads).toBe(1);
      expect(start.snapshot, `generation ${start.generation}`).toEqual(expected.get(start.generation));
      expect(start.command.hibernatingRequests).toEqual(start.snapshot);
      expect(applied.filter((a) => a.generation === start.generation)).toEqual([start.command]);
    }
    await recordHistories(stack.temporal, actor.actorId, 'every-start-reason-drops-lost-generation');
  });
});

describe('reading the hibernating-request table', () => {
  const SRC = fileURLToPath(new URL('../src/', import.meta.url));

  async function sources(dir = SRC): Promise<{ path: string; text: string }[]> {
    const entries = await readdir(dir, { withFileTypes: true });
    const nested = await Promise.all(
      entries.map(async (e) => {
        const path = join(dir, e.name);
        if (e.isDirectory()) return sources(path);
        return e.name.endsWith('.ts') ? [{ path: path.slice(SRC.length), text: await readFile(path, 'utf8') }] : [];
      }),
    );
    return nested.flat();
  }

  it('happens in one query, called by one activity, called by one workflow function', async () => {
    const files = await sources();
    // Reads are FROM or JOIN the table; deletes (every way a request ends) are not reads.
    const selects = files.filter((f) => /(?<!DELETE\s)(FROM|JOIN)\s+hibernating_requests/i.test(f.text));
    expect(selects.map((f) => f.path)).toEqual(['db/hibernating-requests.ts']);
    const callers = files.filter(
      (f) => f.text.includes('listLiveHibernatingRequests(') && f.path !== 'db/hibernating-requests.ts',
    );
    expect(callers.map((f) => f.path)).toEqual(['activities/start.ts']);
    const workflowCalls = files.flatMap((f) =>
      (f.text.match(/acts\.listHibernatingRequests/g) ?? []).map(() => f.path),
    );
    expect(workflowCalls).toEqual(['workflows/actor.ts']);
    const actor = files.find((f) => f.path === 'workflows/actor.ts')!.text;
    const inStart = actor.slice(actor.indexOf('private async startGeneration'), actor.indexOf('// --- Waiting phases'));
    expect(inStart).toContain('acts.listHibernatingRequests');
    expect(actor.match(/kind: 'startActor'/g)).toHaveLength(1);
  });

  it('is never done inside insertAndSendCommands', async () => {
    const start = await readFile(join(SRC, 'activities/start.ts'), 'utf8');
    const body = start.slice(start.indexOf('async insertAndSendCommands'));
    expect(body).not.toMatch(/hibernating|listLive|SELECT/i);
  });
});
