/**
 * Schema hygiene (issue 7): the registry keeps no column nobody reads, and every query the reaper
 * and the API run on a growing table can use an index. The plans are checked with sequential
 * scans disabled, so a tiny table still shows whether an index fits the query at all.
 */
import { LIST_SQL, WRITE_SQL } from '../src/db/kv.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestStack, type TestStack } from './harness/stack.js';

let stack: TestStack;

beforeAll(async () => {
  stack = await createTestStack({ workers: 0, gateway: false, runners: [] });
});
afterAll(() => stack?.stop());

async function columns(table: string): Promise<string[]> {
  const { rows } = await stack.db.query<{ column_name: string }>(
    'SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY column_name',
    [table],
  );
  return rows.map((r) => r.column_name);
}

/** The plan of `sql` with sequential scans off: names the index it can use, if any. */
async function plan(sql: string, params: unknown[]): Promise<string> {
  const client = await stack.db.connect();
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL enable_seqscan = off');
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, params);
    return rows.map((r) => r['QUERY PLAN']).join('\n');
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

describe('schema', () => {
  it('keeps no column that is written but never read', async () => {
    for (const dropped of ['connectable', 'sleep_ts', 'alarm_ts'])
      expect(await columns('actors')).not.toContain(dropped);
    for (const dropped of ['name', 'connected_at']) expect(await columns('runners')).not.toContain(dropped);
  });

  it('drops the index no query uses', async () => {
    const { rows } = await stack.db.query("SELECT 1 FROM pg_indexes WHERE indexname = 'runners_allocatable_idx'");
    expect(rows).toHaveLength(0);
  });

  it.each([
    [
      'orphan repair',
      `SELECT actor_id FROM actors WHERE generation = 0 AND state = 'allocating' AND destroyed_at IS NULL
         AND created_at < now() - make_interval(secs => $1::double precision / 1000) LIMIT 100`,
      [60_000],
      'actors_orphan_idx',
    ],
    [
      'the command trim',
      `DELETE FROM runner_commands WHERE created_at < now() - make_interval(secs => $1::double precision / 1000)`,
      [600_000],
      'runner_commands_created_idx',
    ],
    [
      'listing live actors',
      'SELECT actor_id FROM actors WHERE destroyed_at IS NULL ORDER BY created_at, actor_id LIMIT $1',
      [100],
      'actors_live_created_idx',
    ],
  ])('serves %s from an index', async (_what, sql, params, index) => {
    expect(await plan(sql, params)).toContain(index);
  });

  it('bounds the outbox trim and the KV list to their key range on the primary key', async () => {
    const actorId = '00000000-0000-0000-0000-000000000000';
    // The fanout benchmark found the trim scanning every key of the actor per connection: each
    // range must be an index condition, not a filter on all the actor's rows.
    const placement = [actorId, actorId, 1];
    const write = await plan(WRITE_SQL, [
      ...placement,
      ['__dormouse/out/r/'],
      ['__dormouse/out/r/000009'],
      [],
      ['k'],
      ['dg=='],
    ]);
    expect(write).toMatch(/Index Cond: \(\(actor_id = .*\) AND \(key >= /);
    const list = await plan(LIST_SQL, [...placement, '__dormouse/']);
    expect(list).toMatch(/Index Cond: \(\(actor_id = .*\) AND \(key >= /);
  });
});
