/**
 * Actor KV storage, reached by runners only through the gateway. Every operation is fenced: it
 * runs only while the registry places the actor on that runner at that generation, so a
 * runner that lost its actor cannot write over its successor.
 *
 * Each operation is one statement, fence included: one round trip to Postgres where a
 * transaction (BEGIN, fence, the work, COMMIT) took four or more, on the path of every message a
 * handler persists and of every wake from rest. A statement is atomic and sees one snapshot, so
 * its fence holds for all its parts.
 */
import type { KvEntry, KvOp } from '../protocol/runner-protocol.js';
import { Fenced } from '../errors.js';
import type { Db } from './pool.js';

/** Parameters $1–$3 of every statement: the placement that must hold. */
const PLACED = `SELECT 1 FROM actors WHERE actor_id = $1 AND runner_id = $2 AND generation = $3
  AND state IN ('starting', 'running', 'stopping')`;

/*
 * Key ranges: `key >= prefix` bounds each range on the primary key's index (starts_with alone
 * cannot, and the trim then read every key of the actor once per connection); test/schema.test.ts
 * checks both plans.
 */

/** The entries of keys $4; a first row with `placed` false when the fence fails. */
const GET_SQL = `SELECT f.placed, kv.key, kv.value FROM (SELECT EXISTS (${PLACED}) AS placed) f
  LEFT JOIN actor_kv kv ON f.placed AND kv.actor_id = $1 AND kv.key = ANY($4::text[])`;

/** The entries whose key starts with $4, in order; a first row with `placed` false when the fence fails. */
export const LIST_SQL = `SELECT f.placed, kv.key, kv.value FROM (SELECT EXISTS (${PLACED}) AS placed) f
  LEFT JOIN actor_kv kv ON f.placed AND kv.actor_id = $1 AND kv.key >= $4 AND starts_with(kv.key, $4)
  ORDER BY kv.key`;

/**
 * One write: trims per `(prefix $4, through $5)`, deletes $6, puts ($7 keys, $8 base64 values).
 * FOR SHARE: a concurrent allocation (which takes FOR UPDATE) waits until the write is done.
 * A statement must not change one row twice: deletes never name a put key (runKvOp drops them),
 * and a trim spares put keys (it never reaches them: the outbox trims only acknowledged frames).
 */
export const WRITE_SQL = `WITH fence AS (${PLACED} FOR SHARE),
  trimmed AS (
    DELETE FROM actor_kv a USING unnest($4::text[], $5::text[]) AS t(prefix, through)
    WHERE EXISTS (SELECT 1 FROM fence) AND a.actor_id = $1 AND a.key >= t.prefix AND a.key <= t.through
      AND starts_with(a.key, t.prefix) AND a.key <> ALL($7::text[])),
  deleted AS (
    DELETE FROM actor_kv WHERE EXISTS (SELECT 1 FROM fence) AND actor_id = $1 AND key = ANY($6::text[])),
  put AS (
    INSERT INTO actor_kv (actor_id, key, value)
    SELECT $1, k, decode(v, 'base64') FROM unnest($7::text[], $8::text[]) AS e(k, v)
    WHERE EXISTS (SELECT 1 FROM fence)
    ON CONFLICT (actor_id, key) DO UPDATE SET value = excluded.value)
  SELECT EXISTS (SELECT 1 FROM fence) AS placed`;

export interface KvFence {
  actorId: string;
  runnerId: string;
  generation: number;
}

interface Row {
  placed: boolean;
  key: string | null;
  value: Buffer | null;
}

export async function runKvOp(db: Db, fence: KvFence, op: KvOp): Promise<KvEntry[]> {
  const placement = [fence.actorId, fence.runnerId, fence.generation];
  switch (op.kind) {
    case 'get': {
      const found = new Map(entries(fence, (await db.query<Row>(GET_SQL, [...placement, op.keys])).rows));
      return op.keys.map((key) => ({ key, value: found.get(key) ?? null }));
    }
    case 'list':
      return entries(fence, (await db.query<Row>(LIST_SQL, [...placement, op.prefix])).rows).map(([key, value]) => ({
        key,
        value,
      }));
    case 'write': {
      // A key both put and deleted in one batch ends up put.
      const puts = new Map(op.put.map((e) => [e.key, e.value]));
      const deletes = op.delete.filter((key) => !puts.has(key));
      const trim = op.trim ?? [];
      const { rows } = await db.query<Pick<Row, 'placed'>>(WRITE_SQL, [
        ...placement,
        trim.map((t) => t.prefix),
        trim.map((t) => t.through),
        deletes,
        [...puts.keys()],
        [...puts.values()],
      ]);
      if (!rows[0]?.placed) throw fenced(fence);
      return [];
    }
  }
}

/** The rows' entries (key, base64 value), once the first row says the fence held. */
function entries(fence: KvFence, rows: Row[]): [string, string][] {
  if (!rows[0]?.placed) throw fenced(fence);
  return rows.flatMap((r) => (r.key === null || r.value === null ? [] : [[r.key, r.value.toString('base64')]]));
}

function fenced(fence: KvFence): Fenced {
  return new Fenced(`actor ${fence.actorId} generation ${fence.generation} is not placed on runner ${fence.runnerId}`);
}
