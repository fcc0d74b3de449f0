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

/** The sweep: rows of gateways that stopped heartbeating, or that no longer exist. */
export async function deleteDeadGatewayRequests(db: Queryable, thresholdMs: number): Promise<number> {
  const result = await db.query(
    `DELETE FROM hibernating_requests h
     WHERE NOT EXISTS (
       SELECT 1 FROM gateways g WHERE g.gateway_id = h.gateway_id
         AND g.last_ping_at > now() - make_interval(secs => $1::double precision / 1000))`,
    [thresholdMs],
  );
  return result.rowCount ?? 0;
}
