/** Queries on the `actors` registry. The actor workflow is the only writer of state and generation. */
import type { ActorState, CrashPolicy } from '../workflows/actor-api.js';
import { InvariantViolation } from '../errors.js';
import { ACTOR_STATE_CHANNEL, type ActorStateNotice } from './channels.js';
import { inTransaction, type Db, type Queryable } from './pool.js';

/** The public shape of an actor (DESIGN §6). */
export interface Actor {
  actorId: string;
  name: string;
  key: string | null;
  /** Runs only on runners of this pool (DESIGN §6). */
  pool: string;
  input: unknown;
  crashPolicy: CrashPolicy;
  state: ActorState;
  generation: number;
  runnerId: string | null;
  crashCount: number;
  lastError: unknown;
  createdAt: string;
  destroyedAt: string | null;
}

interface ActorRow {
  actor_id: string;
  name: string;
  key: string | null;
  pool: string;
  input: unknown;
  crash_policy: CrashPolicy;
  state: ActorState;
  generation: number;
  runner_id: string | null;
  crash_count: number;
  last_error: unknown;
  created_at: Date;
  destroyed_at: Date | null;
}

const COLUMNS =
  'actor_id, name, key, pool, input, crash_policy, state, generation, runner_id, crash_count, last_error, created_at, destroyed_at';

function toActor(row: ActorRow): Actor {
  return {
    actorId: row.actor_id,
    name: row.name,
    key: row.key,
    pool: row.pool,
    input: row.input,
    crashPolicy: row.crash_policy,
    state: row.state,
    generation: row.generation,
    runnerId: row.runner_id,
    crashCount: row.crash_count,
    lastError: row.last_error,
    createdAt: row.created_at.toISOString(),
    destroyedAt: row.destroyed_at ? row.destroyed_at.toISOString() : null,
  };
}

export interface NewActor {
  actorId: string;
  name: string;
  key: string | null;
  pool: string;
  input: unknown;
  crashPolicy: CrashPolicy;
}

/** Inserts a new actor; returns null when a live actor already holds (name, key). */
export async function insertActor(db: Queryable, actor: NewActor): Promise<Actor | null> {
  const { rows } = await db.query<ActorRow>(
    `INSERT INTO actors (actor_id, name, key, pool, input, crash_policy)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (name, key) WHERE destroyed_at IS NULL AND key IS NOT NULL DO NOTHING
     RETURNING ${COLUMNS}`,
    [actor.actorId, actor.name, actor.key, actor.pool, JSON.stringify(actor.input ?? null), actor.crashPolicy],
  );
  return rows[0] ? toActor(rows[0]) : null;
}

/**
 * Atomic get-or-create by (name, key): concurrent callers all get the one actor. The insert and
 * the fallback read run in a loop because a concurrent destroy can free the key in between.
 */
export async function getOrCreateActor(
  db: Queryable,
  actor: NewActor & { key: string },
): Promise<{ actor: Actor; created: boolean }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const inserted = await insertActor(db, actor);
    if (inserted) return { actor: inserted, created: true };
    const existing = await findLiveActorByKey(db, actor.name, actor.key);
    if (existing) return { actor: existing, created: false };
  }
  throw new Error(`could not get or create actor ${actor.name}/${actor.key}: key kept changing hands`);
}

export async function getActor(db: Queryable, actorId: string): Promise<Actor | null> {
  const { rows } = await db.query<ActorRow>(`SELECT ${COLUMNS} FROM actors WHERE actor_id = $1`, [actorId]);
  return rows[0] ? toActor(rows[0]) : null;
}

/** The rows of many actors at once (those that exist), for a gateway re-reading what it holds. */
export async function getActors(db: Queryable, actorIds: string[]): Promise<Actor[]> {
  const { rows } = await db.query<ActorRow>(`SELECT ${COLUMNS} FROM actors WHERE actor_id = ANY($1::uuid[])`, [
    actorIds,
  ]);
  return rows.map(toActor);
}

export async function findLiveActorByKey(db: Queryable, name: string, key: string): Promise<Actor | null> {
  const { rows } = await db.query<ActorRow>(
    `SELECT ${COLUMNS} FROM actors WHERE name = $1 AND key = $2 AND destroyed_at IS NULL`,
    [name, key],
  );
  return rows[0] ? toActor(rows[0]) : null;
}

export async function listActors(
  db: Queryable,
  filter: { name?: string; key?: string; limit: number },
): Promise<Actor[]> {
  const { rows } = await db.query<ActorRow>(
    `SELECT ${COLUMNS} FROM actors
     WHERE ($1::text IS NULL OR name = $1) AND ($2::text IS NULL OR key = $2) AND destroyed_at IS NULL
     ORDER BY created_at, actor_id LIMIT $3`,
    [filter.name ?? null, filter.key ?? null, filter.limit],
  );
  return rows.map(toActor);
}

/**
 * What an allocation found: the runner chosen, or an actor destroyed meanwhile. A destroy is a
 * normal race, not a contradiction: the workflow abandons a waiting allocation when a destroy
 * arrives, and that allocation's attempt may still be waiting on the row lock the destroy holds.
 */
export type Allocation = { runnerId: string } | { destroyed: true };

/**
 * Chooses a runner for `generation` of an actor and records it. Idempotent for a retried
 * activity: if the actor already holds `generation`, the runner chosen then is returned.
 * Returns null when no live runner of the actor's pool hosting its name has free capacity. Throws
 * InvariantViolation when the row contradicts the workflow (gone, or at a later generation). A
 * destroyed actor gets `{destroyed}` and takes no slot.
 */
export async function allocateActor(
  db: Queryable,
  args: { actorId: string; generation: number; runnerLostMs: number },
): Promise<Allocation | null> {
  const { rows } = await db.query<{
    generation: number;
    runner_id: string | null;
    destroyed: boolean;
    chosen: string | null;
  }>(ALLOCATE_SQL, [args.actorId, args.generation, args.runnerLostMs, ACTOR_STATE_CHANNEL]);
  const actor = rows[0];
  if (!actor) throw new InvariantViolation(`actor ${args.actorId} does not exist`);
  if (actor.destroyed) return { destroyed: true };
  if (actor.chosen) return { runnerId: actor.chosen };
  if (actor.generation === args.generation && actor.runner_id) return { runnerId: actor.runner_id };
  if (actor.generation >= args.generation) {
    throw new InvariantViolation(
      `actor ${args.actorId} is at generation ${actor.generation}, cannot allocate ${args.generation}`,
    );
  }
  return null;
}

/**
 * The allocation as one statement ($1 actor, $2 generation, $3 runnerLostMs, $4 the state
 * channel): one round trip to Postgres on the path of every start and wake, where a transaction
 * took seven. The actor's row is locked first (FOR UPDATE: a concurrent destroy or allocation
 * waits, or is waited for, and the row is then read as that one left it); a runner is chosen
 * only for a live actor below `generation`: the least-loaded live runner of its pool that hosts
 * its type, SKIP LOCKED so that concurrent allocations pick different runners instead of queueing
 * on one row. Its slot is taken and the old runner's, if any, given back in one UPDATE (both
 * may be the same row, which one statement must not change twice), and the gateways notified.
 */
const ALLOCATE_SQL = `WITH actor AS (
    SELECT name, pool, generation, runner_id, destroyed_at IS NOT NULL AS destroyed
    FROM actors WHERE actor_id = $1 FOR UPDATE),
  chosen AS (
    SELECT r.runner_id FROM runners r, actor a
    WHERE NOT a.destroyed AND a.generation < $2
      AND r.lost_at IS NULL AND r.drained_at IS NULL AND r.gateway_id IS NOT NULL
      AND r.allocated < r.capacity AND a.name = ANY(r.actor_names) AND r.pool = a.pool
      AND r.last_ping_at > now() - make_interval(secs => $3::double precision / 1000)
    ORDER BY r.allocated::float / r.capacity, r.last_ping_at DESC
    LIMIT 1 FOR UPDATE OF r SKIP LOCKED),
  slots AS (
    UPDATE runners r
    SET allocated = greatest(r.allocated + (r.runner_id = c.runner_id)::int
                                         - (r.runner_id IS NOT DISTINCT FROM a.runner_id)::int, 0)
    FROM actor a, chosen c WHERE r.runner_id = c.runner_id OR r.runner_id = a.runner_id),
  placed AS (
    UPDATE actors SET generation = $2, runner_id = c.runner_id, state = 'starting'
    FROM chosen c WHERE actor_id = $1
    RETURNING c.runner_id),
  notified AS (
    SELECT pg_notify($4, json_build_object(
      'actorId', $1::uuid, 'state', 'starting', 'generation', $2::int, 'runnerId', p.runner_id)::text)
    FROM placed p)
  -- A SELECT in a WITH runs only if referenced: the notices column is what makes the NOTIFY happen.
  SELECT a.generation, a.runner_id, a.destroyed, p.runner_id AS chosen, (SELECT count(*) FROM notified) AS notices
  FROM actor a LEFT JOIN placed p ON true`;

async function releaseSlot(tx: Queryable, runnerId: string): Promise<void> {
  await tx.query('UPDATE runners SET allocated = greatest(allocated - 1, 0) WHERE runner_id = $1', [runnerId]);
}

async function notifyState(tx: Queryable, notice: ActorStateNotice): Promise<void> {
  await tx.query('SELECT pg_notify($1, $2)', [ACTOR_STATE_CHANNEL, JSON.stringify(notice)]);
}

export interface StateChange {
  actorId: string;
  generation: number;
  state: Exclude<ActorState, 'destroyed'>;
  crashCount: number;
  lastError: string | null;
}

/**
 * Records a state the workflow moved to and notifies gateways. Leaving the runner (sleeping,
 * backoff, allocating) frees its slot. A write for an older generation changes nothing.
 */
export async function recordActorState(db: Db, change: StateChange): Promise<void> {
  const leavesRunner = change.state === 'sleeping' || change.state === 'backoff' || change.state === 'allocating';
  await inTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ runner_id: string | null }>(
      'SELECT runner_id FROM actors WHERE actor_id = $1 AND generation = $2 AND destroyed_at IS NULL FOR UPDATE',
      [change.actorId, change.generation],
    );
    const row = rows[0];
    if (!row) return;
    if (leavesRunner && row.runner_id) await releaseSlot(tx, row.runner_id);
    await tx.query(
      `UPDATE actors SET state = $2,
         runner_id = CASE WHEN $3 THEN NULL ELSE runner_id END,
         crash_count = $4,
         last_error = $5::jsonb
       WHERE actor_id = $1`,
      [change.actorId, change.state, leavesRunner, change.crashCount, JSON.stringify(change.lastError)],
    );
    await notifyState(tx, {
      actorId: change.actorId,
      state: change.state,
      generation: change.generation,
      runnerId: leavesRunner ? null : row.runner_id,
    });
  });
}

/**
 * Marks an actor destroyed whatever its generation: frees its key and runner slot and deletes
 * its storage and hibernating requests. Idempotent.
 */
export async function destroyActor(db: Db, actorId: string, lastError: string | null): Promise<void> {
  await inTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ runner_id: string | null; generation: number }>(
      'SELECT runner_id, generation FROM actors WHERE actor_id = $1 AND destroyed_at IS NULL FOR UPDATE',
      [actorId],
    );
    const row = rows[0];
    if (!row) return;
    if (row.runner_id) await releaseSlot(tx, row.runner_id);
    await tx.query(
      `UPDATE actors SET state = 'destroyed', runner_id = NULL, destroyed_at = now(),
         last_error = coalesce($2::jsonb, last_error)
       WHERE actor_id = $1`,
      [actorId, lastError === null ? null : JSON.stringify(lastError)],
    );
    await tx.query('DELETE FROM actor_kv WHERE actor_id = $1', [actorId]);
    await tx.query('DELETE FROM hibernating_requests WHERE actor_id = $1', [actorId]);
    await notifyState(tx, { actorId, state: 'destroyed', generation: row.generation, runnerId: null });
  });
}

/** Actors still placed on a runner that has been declared lost: the reaper signals them. */
export async function actorsOnLostRunners(db: Queryable): Promise<{ actorId: string; runnerId: string }[]> {
  const { rows } = await db.query<{ actor_id: string; runner_id: string }>(
    `SELECT a.actor_id, a.runner_id FROM actors a JOIN runners r USING (runner_id)
     WHERE r.lost_at IS NOT NULL AND a.destroyed_at IS NULL`,
  );
  return rows.map((r) => ({ actorId: r.actor_id, runnerId: r.runner_id }));
}

/**
 * Actors created a while ago whose workflow never took its first step (a crash after insert), at
 * most `limit`, in random order: when some keep failing to start, the others still get a turn.
 */
export async function orphanedActors(db: Queryable, olderThanMs: number, limit: number): Promise<Actor[]> {
  const { rows } = await db.query<ActorRow>(
    `SELECT ${COLUMNS} FROM actors
     WHERE generation = 0 AND state = 'allocating' AND destroyed_at IS NULL
       AND created_at < now() - make_interval(secs => $1::double precision / 1000)
     ORDER BY random() LIMIT $2`,
    [olderThanMs, limit],
  );
  return rows.map(toActor);
}
