/** Queries on the `runners` table: connection, liveness, loss. */
import type { Queryable } from './pool.js';

export interface RunnerHello {
  runnerId: string;
  pool: string;
  capacity: number;
  actorNames: string[];
  protocolVersion: number;
  gatewayId: string;
}

/**
 * Records a runner's (re)connection through a gateway and returns its new connection epoch. A
 * runner that had been declared lost comes back with an empty slate: its actors were moved, so
 * its allocation restarts at the actors still placed on it. Returns null, changing nothing, when
 * the runner id is registered to another pool: a hello cannot take over another pool's runner.
 */
export async function connectRunner(db: Queryable, hello: RunnerHello): Promise<number | null> {
  const { rows } = await db.query<{ connection_epoch: string }>(
    `INSERT INTO runners (runner_id, pool, actor_names, capacity, protocol_version, gateway_id)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (runner_id) DO UPDATE SET
       pool = excluded.pool, actor_names = excluded.actor_names,
       capacity = excluded.capacity, protocol_version = excluded.protocol_version,
       gateway_id = excluded.gateway_id, last_ping_at = now(), lost_at = NULL, drained_at = NULL,
       allocated = (SELECT count(*) FROM actors a WHERE a.runner_id = excluded.runner_id),
       connection_epoch = runners.connection_epoch + 1
     WHERE runners.pool = excluded.pool
     RETURNING connection_epoch`,
    [hello.runnerId, hello.pool, hello.actorNames, hello.capacity, hello.protocolVersion, hello.gatewayId],
  );
  return rows[0] ? Number(rows[0].connection_epoch) : null;
}

/** One connection of a runner: its id and the epoch `connectRunner` gave that connection. */
export interface RunnerEpoch {
  runnerId: string;
  epoch: number;
}

/**
 * One write for all the runners a gateway holds: their pings since the last flush. Returns the
 * ids whose row matched; a connection that matched nothing is no longer the runner's registered
 * one (replaced, or declared lost) and must say hello again.
 */
export async function touchRunners(db: Queryable, gatewayId: string, runners: RunnerEpoch[]): Promise<Set<string>> {
  if (runners.length === 0) return new Set();
  const { rows } = await db.query<{ runner_id: string }>(
    `UPDATE runners r SET last_ping_at = now()
     FROM unnest($1::uuid[], $2::bigint[]) AS t(runner_id, epoch)
     WHERE r.runner_id = t.runner_id AND r.connection_epoch = t.epoch AND r.gateway_id = $3 AND r.lost_at IS NULL
     RETURNING r.runner_id`,
    [runners.map((r) => r.runnerId), runners.map((r) => r.epoch), gatewayId],
  );
  return new Set(rows.map((r) => r.runner_id));
}

/**
 * The runner's socket closed; it keeps its actors until it reconnects or is declared lost. Only
 * the connection of the current epoch clears the gateway: the late close of an older one must
 * not unplug the runner's live connection.
 */
export async function disconnectRunner(db: Queryable, connection: RunnerEpoch, gatewayId: string): Promise<void> {
  await db.query(
    'UPDATE runners SET gateway_id = NULL WHERE runner_id = $1 AND connection_epoch = $2 AND gateway_id = $3',
    [connection.runnerId, connection.epoch, gatewayId],
  );
}

/** Declares lost every runner whose last ping is older than the threshold; returns their ids. */
export async function markLostRunners(db: Queryable, lostMs: number): Promise<string[]> {
  const { rows } = await db.query<{ runner_id: string }>(
    `UPDATE runners SET lost_at = now(), gateway_id = NULL, allocated = 0
     WHERE lost_at IS NULL AND last_ping_at < now() - make_interval(secs => $1::double precision / 1000)
     RETURNING runner_id`,
    [lostMs],
  );
  return rows.map((r) => r.runner_id);
}

/** Which (actor, generation) pairs a runner may keep: those the registry places on it. */
export async function actorsPlacedOn(db: Queryable, runnerId: string): Promise<Map<string, number>> {
  const { rows } = await db.query<{ actor_id: string; generation: number }>(
    'SELECT actor_id, generation FROM actors WHERE runner_id = $1',
    [runnerId],
  );
  return new Map(rows.map((r) => [r.actor_id, r.generation]));
}

export async function connectedRunnerCount(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    'SELECT count(*) AS n FROM runners WHERE gateway_id IS NOT NULL AND lost_at IS NULL',
  );
  return Number(rows[0]?.n ?? 0);
}

/** The runner is shutting down: no new allocations go to it. */
export async function drainRunner(db: Queryable, runnerId: string): Promise<void> {
  await db.query('UPDATE runners SET drained_at = now() WHERE runner_id = $1', [runnerId]);
}

/** Whether the registry places `actorId` at `generation` on this runner: what a runner may speak for. */
export async function hosts(db: Queryable, runnerId: string, actorId: string, generation: number): Promise<boolean> {
  const { rowCount } = await db.query(
    'SELECT 1 FROM actors WHERE actor_id = $1 AND runner_id = $2 AND generation = $3',
    [actorId, runnerId, generation],
  );
  return (rowCount ?? 0) > 0;
}

/**
 * Forgets runners declared lost longer than `retentionMs` ago that no actor is placed on (their
 * commands are trimmed after the same retention): without this the table only ever grows. A
 * runner that comes back after that connects as a new row.
 */
export async function deleteLostRunners(db: Queryable, retentionMs: number): Promise<number> {
  const result = await db.query(
    `DELETE FROM runners r
     WHERE r.lost_at < now() - make_interval(secs => $1::double precision / 1000)
       AND NOT EXISTS (SELECT 1 FROM actors a WHERE a.runner_id = r.runner_id)`,
    [retentionMs],
  );
  return result.rowCount ?? 0;
}

/** The gateway a runner is connected to right now, if any (the bus routes its frames there). */
export async function gatewayOfRunner(db: Queryable, runnerId: string): Promise<string | null> {
  const { rows } = await db.query<{ gateway_id: string | null }>(
    'SELECT gateway_id FROM runners WHERE runner_id = $1 AND lost_at IS NULL',
    [runnerId],
  );
  return rows[0]?.gateway_id ?? null;
}
