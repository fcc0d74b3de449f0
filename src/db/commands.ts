/** The runners' command queues (`runner_commands`). */
import type { CommandEnvelope } from '../protocol/runner-protocol.js';
import { COMMANDS_CHANNEL } from './channels.js';
import type { Queryable } from './pool.js';

/**
 * Queues commands for a runner and notifies its gateway, in one statement (one round trip on the
 * path of every start; a statement is atomic, and its NOTIFY goes out when it commits).
 * Idempotent on (actor_id, generation, idx): a retried call with the same envelopes changes
 * nothing, and a command that was already acknowledged is not queued again.
 */
export async function insertCommands(db: Queryable, runnerId: string, commands: CommandEnvelope[]): Promise<number> {
  const { rows } = await db.query<{ inserted: number }>(
    `WITH inserted AS (
       INSERT INTO runner_commands (actor_id, generation, idx, runner_id, payload)
       SELECT actor_id, generation, idx, $1, payload
       FROM unnest($2::uuid[], $3::int[], $4::int[], $5::jsonb[]) AS c(actor_id, generation, idx, payload)
       ON CONFLICT (actor_id, generation, idx) DO NOTHING
       RETURNING 1)
     SELECT (SELECT count(*)::int FROM inserted) AS inserted, pg_notify($6, $1::text)`,
    [
      runnerId,
      commands.map((c) => c.actorId),
      commands.map((c) => c.generation),
      commands.map((c) => c.idx),
      commands.map((c) => JSON.stringify(c.command)),
      COMMANDS_CHANNEL,
    ],
  );
  return rows[0]!.inserted;
}

/**
 * The runner's unacknowledged commands in queue order. A `startActor` whose actor has since
 * moved to another generation or runner is stale and never delivered: starting it would run
 * the actor twice.
 */
export async function pendingCommands(db: Queryable, runnerId: string): Promise<CommandEnvelope[]> {
  const { rows } = await db.query<{
    actor_id: string;
    generation: number;
    idx: number;
    payload: CommandEnvelope['command'];
  }>(
    `SELECT c.actor_id, c.generation, c.idx, c.payload
     FROM runner_commands c JOIN actors a USING (actor_id)
     WHERE c.runner_id = $1 AND c.acked_at IS NULL
       AND NOT (c.payload->>'kind' = 'startActor'
                AND (a.generation <> c.generation OR a.runner_id IS DISTINCT FROM c.runner_id))
     ORDER BY c.created_at, c.actor_id, c.generation, c.idx`,
    [runnerId],
  );
  return rows.map((r) => ({ actorId: r.actor_id, generation: r.generation, idx: r.idx, command: r.payload }));
}

export async function ackCommands(
  db: Queryable,
  runnerId: string,
  acks: { actorId: string; generation: number; idx: number }[],
): Promise<void> {
  if (acks.length === 0) return;
  await db.query(
    `UPDATE runner_commands c SET acked_at = now()
     FROM unnest($2::uuid[], $3::int[], $4::int[]) AS a(actor_id, generation, idx)
     WHERE c.runner_id = $1 AND c.acked_at IS NULL
       AND c.actor_id = a.actor_id AND c.generation = a.generation AND c.idx = a.idx`,
    [runnerId, acks.map((a) => a.actorId), acks.map((a) => a.generation), acks.map((a) => a.idx)],
  );
}

/** Deletes commands older than the retention period, acknowledged or stale. */
export async function trimCommands(db: Queryable, retentionMs: number): Promise<number> {
  const result = await db.query(
    `DELETE FROM runner_commands WHERE created_at < now() - make_interval(secs => $1::double precision / 1000)`,
    [retentionMs],
  );
  return result.rowCount ?? 0;
}

/** Queue depth per runner, for metrics and `doctor`. */
export async function pendingCommandCount(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM runner_commands WHERE acked_at IS NULL');
  return Number(rows[0]?.n ?? 0);
}
