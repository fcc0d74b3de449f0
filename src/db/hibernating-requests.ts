/**
 * The registry of hibernating requests. A row is live while its gateway heartbeats within the
 * hibernation threshold T; liveness is a join on `gateways`, never a per-row timestamp.
 */
import type { HibernatingRequestRef } from '../protocol/runner-protocol.js';
import type { Queryable } from './pool.js';

export async function insertHibernatingRequest(
  db: Queryable,
  row: { gatewayId: string; requestId: string; actorId: string },
): Promise<void> {
  await db.query(
    `INSERT INTO hibernating_requests (gateway_id, request_id, actor_id) VALUES ($1, $2, $3)
     ON CONFLICT (gateway_id, request_id) DO NOTHING`,
    [row.gatewayId, row.requestId, row.actorId],
  );
}

export async function deleteHibernatingRequest(db: Queryable, gatewayId: string, requestId: string): Promise<void> {
  await db.query('DELETE FROM hibernating_requests WHERE gateway_id = $1 AND request_id = $2', [gatewayId, requestId]);
}

/**
 * The actor's live hibernating requests, in a stable order. Only the `listHibernatingRequests`
 * activity calls this: a start's snapshot is read once and travels in the command (DESIGN §1).
 */
export async function listLiveHibernatingRequests(
  db: Queryable,
  actorId: string,
  thresholdMs: number,
): Promise<HibernatingRequestRef[]> {
  const { rows } = await db.query<{ gateway_id: string; request_id: string }>(
    `SELECT h.gateway_id, h.request_id
     FROM hibernating_requests h JOIN gateways g USING (gateway_id)
     WHERE h.actor_id = $1 AND g.last_ping_at > now() - make_interval(secs => $2::double precision / 1000)
     ORDER BY h.opened_at, h.gateway_id, h.request_id`,
    [actorId, thresholdMs],
  );
  return rows.map((r) => ({ gatewayId: r.gateway_id, requestId: r.request_id }));
}

/** How many live hibernating requests the actor has: what its next snapshot would list. */
export async function countLiveHibernatingRequests(
  db: Queryable,
  actorId: string,
  thresholdMs: number,
): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n
     FROM hibernating_requests h JOIN gateways g USING (gateway_id)
     WHERE h.actor_id = $1 AND g.last_ping_at > now() - make_interval(secs => $2::double precision / 1000)`,
    [actorId, thresholdMs],
  );
  return rows[0]?.n ?? 0;
}

/**
 * The sweep: rows of gateways that stopped heartbeating. The few dead gateways are looked up
 * first and their rows deleted by key, so a tick costs what there is to sweep, not a scan of every
 * hibernating row. Rows of a gateway that no longer exists went with it (gateways.ts
 * deleteDeadGateways), and a gateway that registers again deletes its own (registerGateway).
 */
export async function deleteDeadGatewayRequests(db: Queryable, thresholdMs: number): Promise<number> {
  const { rows } = await db.query<{ gateway_id: string }>(
    'SELECT gateway_id FROM gateways WHERE last_ping_at <= now() - make_interval(secs => $1::double precision / 1000)',
    [thresholdMs],
  );
  if (rows.length === 0) return 0;
  const result = await db.query('DELETE FROM hibernating_requests WHERE gateway_id = ANY($1::text[])', [
    rows.map((r) => r.gateway_id),
  ]);
  return result.rowCount ?? 0;
}
