/**
 * Actor KV storage, reached by runners only through the gateway. Every operation is fenced: it
 * runs only while the registry places the actor on that runner at that generation, so a
 * runner that lost its actor cannot write over its successor.
 */
import type { KvEntry, KvOp } from '../protocol/runner-protocol.js';
import { Fenced } from '../errors.js';
import { inTransaction, type Db } from './pool.js';

/*
 * Key ranges: `key >= prefix` bounds each range on the primary key's index (starts_with alone
 * cannot, and the trim then read every key of the actor once per connection); test/schema.test.ts
 * checks both plans.
 */
/** Deletes, per `(prefix, through)`, the keys with that prefix up to `through`. */
export const TRIM_SQL = `DELETE FROM actor_kv a USING unnest($2::text[], $3::text[]) AS t(prefix, through)
  WHERE a.actor_id = $1 AND a.key >= t.prefix AND a.key <= t.through AND starts_with(a.key, t.prefix)`;
/** The keys with a prefix, in order. */
export const LIST_SQL = `SELECT key, value FROM actor_kv
  WHERE actor_id = $1 AND key >= $2 AND starts_with(key, $2) ORDER BY key`;

export interface KvFence {
  actorId: string;
  runnerId: string;
  generation: number;
}

export async function runKvOp(db: Db, fence: KvFence, op: KvOp): Promise<KvEntry[]> {
  return inTransaction(db, async (tx) => {
    // FOR SHARE: a concurrent allocation (which takes FOR UPDATE) waits until this op is done.
    const { rowCount } = await tx.query(
      `SELECT 1 FROM actors WHERE actor_id = $1 AND runner_id = $2 AND generation = $3
         AND state IN ('starting', 'running', 'stopping') FOR SHARE`,
      [fence.actorId, fence.runnerId, fence.generation],
    );
    if (!rowCount) {
      throw new Fenced(
        `actor ${fence.actorId} generation ${fence.generation} is not placed on runner ${fence.runnerId}`,
      );
    }
    switch (op.kind) {
      case 'get': {
        const { rows } = await tx.query<{ key: string; value: Buffer }>(
          'SELECT key, value FROM actor_kv WHERE actor_id = $1 AND key = ANY($2::text[])',
          [fence.actorId, op.keys],
        );
        const found = new Map(rows.map((r) => [r.key, r.value.toString('base64')]));
        return op.keys.map((key) => ({ key, value: found.get(key) ?? null }));
      }
      case 'write': {
        // A key both put and deleted in one batch ends up put.
        const puts = new Map(op.put.map((e) => [e.key, e.value]));
        const deletes = op.delete.filter((key) => !puts.has(key));
        // Ranges first: a write never trims what it puts (the outbox trims only acknowledged frames).
        const trim = op.trim ?? [];
        if (trim.length > 0) {
          await tx.query(TRIM_SQL, [fence.actorId, trim.map((t) => t.prefix), trim.map((t) => t.through)]);
        }
        if (deletes.length > 0) {
          await tx.query('DELETE FROM actor_kv WHERE actor_id = $1 AND key = ANY($2::text[])', [
            fence.actorId,
            deletes,
          ]);
        }
        if (puts.size > 0) {
          await tx.query(
            `INSERT INTO actor_kv (actor_id, key, value)
             SELECT $1, k, decode(v, 'base64') FROM unnest($2::text[], $3::text[]) AS e(k, v)
             ON CONFLICT (actor_id, key) DO UPDATE SET value = excluded.value`,
            [fence.actorId, [...puts.keys()], [...puts.values()]],
          );
        }
        return [];
      }
      case 'list': {
        const { rows } = await tx.query<{ key: string; value: Buffer }>(LIST_SQL, [fence.actorId, op.prefix]);
        return rows.map((r) => ({ key: r.key, value: r.value.toString('base64') }));
      }
    }
  });
}
