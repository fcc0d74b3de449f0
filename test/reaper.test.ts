/**
 * The registry at scale and under races (issue 8 §2), on a real Postgres with the reaper's
 * activity and the allocation query, and a fake Temporal client that records what they ask of it:
 * - the dead-gateway sweep deletes by key the rows of the few dead gateways, and a forgotten
 *   gateway takes its rows with it;
 * - orphan repair picks in random order and goes on past a start that fails;
 * - runner-lost signals go out at most SIGNAL_CONCURRENCY at a time;
 * - runners lost long ago that hold no actors are deleted;
 * - an allocation that waited on the row lock of a destroy takes no runner slot;
 * - the allocation and the command queue, each one statement: slots taken, moved and kept, a
 *   retry answered alike, the notice sent, and the commands stored exactly as given.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { reaperActivities, SIGNAL_CONCURRENCY } from '../src/activities/reaper.js';
import { loadConfig } from '../src/config.js';
import { allocateActor, destroyActor } from '../src/db/actors.js';
import { ACTOR_STATE_CHANNEL, parseActorStateNotice, type ActorStateNotice } from '../src/db/channels.js';
import { insertCommands, pendingCommands } from '../src/db/commands.js';
import { InvariantViolation } from '../src/errors.js';
import type { CommandEnvelope } from '../src/protocol/runner-protocol.js';
import { createLogger } from '../src/log.js';
import { actorWorkflowId } from '../src/workflows/actor-api.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';

const T = 90_000;
const RETENTION = 10 * 60_000;
const config = loadConfig({});
config.timing = { ...config.timing, hibernationThresholdMs: T, runnerLostMs: 15_000, commandRetentionMs: RETENTION };

let stack: TestStack;
beforeAll(async () => {
  stack = await createTestStack({ workers: 0, gateway: false, runners: [] });
});
afterAll(() => stack?.stop());
beforeEach(async () => {
  await stack.db.query('TRUNCATE actors, runners, gateways, hibernating_requests, runner_commands');
});

/** A Temporal client that records signals (and how many were in flight at once) and workflow starts. */
function fakeTemporal(options: { failStartOf?: string } = {}) {
  const seen = { signals: [] as string[], maxInFlight: 0, starts: [] as string[] };
  let inFlight = 0;
  const client = {
    workflow: {
      getHandle: (workflowId: string) => ({
        signal: async () => {
          inFlight++;
          seen.maxInFlight = Math.max(seen.maxInFlight, inFlight);
          await new Promise((resolve) => setImmediate(resolve));
          seen.signals.push(workflowId);
          inFlight--;
        },
      }),
      start: async (_type: string, opts: { workflowId: string }) => {
        if (opts.workflowId === options.failStartOf) throw new Error('start failed');
        seen.starts.push(opts.workflowId);
      },
    },
  } as unknown as Client;
  return { client, seen };
}

function reap(client: Client) {
  return reaperActivities({ db: stack.db, client, config, log: createLogger('test', 'silent') }).reap();
}

async function insertRunner(
  row: { lostAgoMs?: number; gatewayId?: string | null; capacity?: number } = {},
): Promise<string> {
  const runnerId = randomUUID();
  await stack.db.query(
    `INSERT INTO runners (runner_id, pool, actor_names, gateway_id, capacity, protocol_version, lost_at)
     VALUES ($1, 'default', '{chat}', $2, $4, 2,
             CASE WHEN $3::float8 IS NULL THEN NULL ELSE now() - make_interval(secs => $3::float8 / 1000) END)`,
    [runnerId, row.gatewayId === undefined ? 'gw-1' : row.gatewayId, row.lostAgoMs ?? null, row.capacity ?? 1],
  );
  return runnerId;
}

async function insertActor(
  row: { runnerId?: string; createdAgoMs?: number; generation?: number } = {},
): Promise<string> {
  const actorId = randomUUID();
  await stack.db.query(
    `INSERT INTO actors (actor_id, name, key, generation, runner_id, created_at)
     VALUES ($1::uuid, 'chat', $1::text, $2, $3, now() - make_interval(secs => $4::float8 / 1000))`,
    [actorId, row.generation ?? 0, row.runnerId ?? null, row.createdAgoMs ?? 0],
  );
  return actorId;
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await stack.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${sql}) q`, params);
  return rows[0]!.n;
}

describe('the dead-gateway sweep', () => {
  it('deletes the rows of dead and forgotten gateways, by key, and keeps the live ones', async () => {
    const gateways = { live: 0, dead: 1.5 * T, forgotten: 2.5 * T };
    for (const [id, agoMs] of Object.entries(gateways)) {
      await stack.db.query(
        `INSERT INTO gateways (gateway_id, address, last_ping_at)
         VALUES ($1, 'http://x', now() - make_interval(secs => $2::float8 / 1000))`,
        [id, agoMs],
      );
      for (let i = 0; i < 3; i++)
        await stack.db.query(
          'INSERT INTO hibernating_requests (gateway_id, request_id, actor_id) VALUES ($1, $2, $3)',
          [id, randomUUID(), randomUUID()],
        );
    }
    const report = await reap(fakeTemporal().client);
    expect(report).toMatchObject({ sweptRequests: 6, forgottenGateways: 1 });
    const { rows } = await stack.db.query<{ gateway_id: string }>(
      'SELECT DISTINCT gateway_id FROM hibernating_requests',
    );
    expect(rows.map((r) => r.gateway_id)).toEqual(['live']);
    expect(await count('SELECT 1 FROM gateways')).toBe(2);
  });

  it('deletes by key: the plan reads the primary key, not every hibernating row', async () => {
    const client = await stack.db.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL enable_seqscan = off');
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(
        'EXPLAIN DELETE FROM hibernating_requests WHERE gateway_id = ANY($1::text[])',
        [['dead']],
      );
      expect(rows.map((r) => r['QUERY PLAN']).join('\n')).toContain('hibernating_requests_pkey');
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });
});

describe('orphan repair', () => {
  it('gives every orphan a turn although one start keeps failing', async () => {
    const orphans: string[] = [];
    for (let i = 0; i < 150; i++) orphans.push(await insertActor({ createdAgoMs: 120_000 }));
    const failing = orphans[0]!;
    const { client, seen } = fakeTemporal({ failStartOf: actorWorkflowId(failing) });
    // 100 of 150 a tick, at random: every one is picked within a few ticks.
    for (let tick = 0; tick < 20 && new Set(seen.starts).size < orphans.length - 1; tick++) {
      const report = await reap(client);
      expect(report.restartedOrphans).toBeGreaterThanOrEqual(99);
    }
    expect(new Set(seen.starts)).toEqual(new Set(orphans.slice(1).map(actorWorkflowId)));
  });
});

describe('lost runners', () => {
  it('signal their actors at most SIGNAL_CONCURRENCY at a time', async () => {
    const runnerId = await insertRunner({ lostAgoMs: 1000 });
    const actors: string[] = [];
    for (let i = 0; i < 100; i++) actors.push(await insertActor({ runnerId, generation: 1 }));
    const { client, seen } = fakeTemporal();
    const report = await reap(client);
    expect(report.signaledActors).toBe(100);
    expect(new Set(seen.signals)).toEqual(new Set(actors.map(actorWorkflowId)));
    expect(seen.maxInFlight).toBeGreaterThan(1);
    expect(seen.maxInFlight).toBeLessThanOrEqual(SIGNAL_CONCURRENCY);
  });

  it('are deleted once lost longer than the retention and holding no actor', async () => {
    const forgotten = await insertRunner({ lostAgoMs: RETENTION + 60_000, gatewayId: null });
    const holding = await insertRunner({ lostAgoMs: RETENTION + 60_000, gatewayId: null });
    const recent = await insertRunner({ lostAgoMs: 60_000, gatewayId: null });
    const live = await insertRunner();
    await insertActor({ runnerId: holding, generation: 1 });
    const report = await reap(fakeTemporal().client);
    expect(report.forgottenRunners).toBe(1);
    const { rows } = await stack.db.query<{ runner_id: string }>('SELECT runner_id FROM runners');
    expect(new Set(rows.map((r) => r.runner_id))).toEqual(new Set([holding, recent, live]));
    expect(rows.map((r) => r.runner_id)).not.toContain(forgotten);
  });
});

describe('an allocation racing a destroy', () => {
  it('that waited on the destroy’s row lock takes no runner slot', async () => {
    const runnerId = await insertRunner();
    const actorId = await insertActor();
    // The destroy holds the actor's row lock…
    const destroyer = await stack.db.connect();
    try {
      await destroyer.query('BEGIN');
      await destroyer.query(
        `UPDATE actors SET state = 'destroyed', destroyed_at = now(), runner_id = NULL WHERE actor_id = $1`,
        [actorId],
      );
      // …while the allocation of generation 1 waits for it.
      const allocation = allocateActor(stack.db, { actorId, generation: 1, runnerLostMs: 15_000 });
      await waitFor(
        async () =>
          (await count(
            `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
          )) > 0,
        { timeoutMs: 5_000, message: 'the allocation waits on the row lock' },
      );
      await destroyer.query('COMMIT');
      expect(await allocation).toEqual({ destroyed: true });
    } finally {
      destroyer.release();
    }
    const { rows } = await stack.db.query<{ allocated: number }>('SELECT allocated FROM runners WHERE runner_id = $1', [
      runnerId,
    ]);
    expect(rows[0]!.allocated).toBe(0);
    expect(await count('SELECT 1 FROM actors WHERE actor_id = $1 AND runner_id IS NOT NULL', [actorId])).toBe(0);
  });

  it('after the destroy committed takes no slot either, and the destroy stays idempotent', async () => {
    const runnerId = await insertRunner();
    const actorId = await insertActor();
    await destroyActor(stack.db, actorId, null);
    expect(await allocateActor(stack.db, { actorId, generation: 1, runnerLostMs: 15_000 })).toEqual({
      destroyed: true,
    });
    await destroyActor(stack.db, actorId, null);
    expect(await count('SELECT 1 FROM runners WHERE runner_id = $1 AND allocated = 0', [runnerId])).toBe(1);
  });
});

describe('the allocation', () => {
  const allocate = (actorId: string, generation: number) =>
    allocateActor(stack.db, { actorId, generation, runnerLostMs: 15_000 });

  async function allocated(): Promise<Record<string, number>> {
    const { rows } = await stack.db.query<{ runner_id: string; allocated: number }>(
      'SELECT runner_id, allocated FROM runners',
    );
    return Object.fromEntries(rows.map((r) => [r.runner_id, r.allocated]));
  }

  async function placement(actorId: string) {
    const { rows } = await stack.db.query<{ generation: number; runner_id: string | null; state: string }>(
      'SELECT generation, runner_id, state FROM actors WHERE actor_id = $1',
      [actorId],
    );
    return rows[0];
  }

  it('takes a slot, answers a retry with the same runner, and keeps the slot when it stays', async () => {
    const a = await insertRunner({ capacity: 2 });
    const actorId = await insertActor();
    expect(await allocate(actorId, 1)).toEqual({ runnerId: a });
    expect(await placement(actorId)).toEqual({ generation: 1, runner_id: a, state: 'starting' });
    expect(await allocate(actorId, 1)).toEqual({ runnerId: a }); // a retried activity
    expect(await allocated()).toEqual({ [a]: 1 });
    // The next generation on the same runner: one statement gives the slot back and takes it.
    expect(await allocate(actorId, 2)).toEqual({ runnerId: a });
    expect(await allocated()).toEqual({ [a]: 1 });
    expect(await placement(actorId)).toEqual({ generation: 2, runner_id: a, state: 'starting' });
  });

  it('moves the slot to the runner with room, and without room changes nothing', async () => {
    const a = await insertRunner({ capacity: 1 });
    const actorId = await insertActor();
    expect(await allocate(actorId, 1)).toEqual({ runnerId: a });
    const b = await insertRunner({ capacity: 1 });
    // `a` is full with this actor's own slot, which it gives back only once another is taken.
    expect(await allocate(actorId, 2)).toEqual({ runnerId: b });
    expect(await allocated()).toEqual({ [a]: 0, [b]: 1 });

    const other = await insertActor();
    expect(await allocate(other, 1)).toEqual({ runnerId: a });
    const third = await insertActor();
    expect(await allocate(third, 1)).toBeNull();
    expect(await placement(third)).toEqual({ generation: 0, runner_id: null, state: 'allocating' });
    expect(await allocated()).toEqual({ [a]: 1, [b]: 1 });
  });

  it('refuses a generation the row is past, and changes nothing', async () => {
    const a = await insertRunner({ capacity: 2 });
    const actorId = await insertActor();
    await allocate(actorId, 1);
    await allocate(actorId, 2);
    await expect(allocate(actorId, 1)).rejects.toThrow(
      new InvariantViolation(`actor ${actorId} is at generation 2, cannot allocate 1`),
    );
    await expect(allocate(randomUUID(), 1)).rejects.toThrow(InvariantViolation);
    expect(await allocated()).toEqual({ [a]: 1 });
    expect(await placement(actorId)).toEqual({ generation: 2, runner_id: a, state: 'starting' });
  });

  it('notifies the gateways of the placement once it commits', async () => {
    const a = await insertRunner();
    const actorId = await insertActor();
    const listener = await stack.db.connect();
    const notices: (ActorStateNotice | null)[] = [];
    try {
      listener.on('notification', (n) => notices.push(parseActorStateNotice(n.payload ?? '')));
      await listener.query(`LISTEN ${ACTOR_STATE_CHANNEL}`);
      await allocate(actorId, 1);
      await waitFor(() => notices.length > 0, { timeoutMs: 5_000, message: 'the notice' });
      await allocate(actorId, 1); // a retry changes nothing, and says nothing
      await allocate(randomUUID(), 1).catch(() => undefined);
      await listener.query('SELECT 1'); // any notice sent by now has arrived before this answer
      expect(notices).toEqual([{ actorId, state: 'starting', generation: 1, runnerId: a }]);
    } finally {
      await listener.query(`UNLISTEN ${ACTOR_STATE_CHANNEL}`);
      listener.release();
    }
  });
});

describe('the command queue', () => {
  it('stores each command exactly as given, once however often it is sent', async () => {
    const runnerId = await insertRunner();
    const actorId = await insertActor({ runnerId, generation: 1 });
    await stack.db.query(`UPDATE actors SET state = 'starting' WHERE actor_id = $1`, [actorId]);
    const tricky = { text: 'a "quoted" \\ back\\slash, {braces}, commas, NULL, ünïcode 🐭', nested: [1, null, '}'] };
    const commands: CommandEnvelope[] = [
      {
        actorId,
        generation: 1,
        idx: 0,
        command: {
          kind: 'startActor',
          actorId,
          name: 'chat',
          key: actorId,
          input: tricky,
          generation: 1,
          reason: 'create',
          hibernatingRequests: [],
        },
      },
      { actorId, generation: 1, idx: 1, command: { kind: 'stopActor', actorId, generation: 1, reason: 'sleep' } },
    ];
    expect(await insertCommands(stack.db, runnerId, commands)).toBe(2);
    expect(await insertCommands(stack.db, runnerId, commands)).toBe(0);
    expect(await pendingCommands(stack.db, runnerId)).toEqual(commands);
  });
});
