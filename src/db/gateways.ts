/** Queries on the `gateways` table. */
import { InvariantViolation } from '../errors.js';
import type { Queryable } from './pool.js';

/**
 * Registers a starting gateway. A gateway that restarts under the same id holds none of its
 * old sockets any more, so their rows go before its heartbeat could make them live again.
 */
export async function registerGateway(db: Queryable, gatewayId: string, address: string): Promise<void> {
  await db.query('DELETE FROM hibernating_requests WHERE gateway_id = $1', [gatewayId]);
  // Its old sessions' sockets are gone too: their clients may still resume them, within the retention (H10).
  await db.query('UPDATE client_sessions SET detached_at = now() WHERE gateway_id = $1 AND detached_at IS NULL', [
    gatewayId,
  ]);
  await db.query(
    `INSERT INTO gateways (gateway_id, address) VALUES ($1, $2)
     ON CONFLICT (gateway_id) DO UPDATE SET address = excluded.address, started_at = now(), last_ping_at = now()`,
    [gatewayId, address],
  );
}

/** The address a gateway serves on, once it knows the port it bound. */
export async function setGatewayAddress(db: Queryable, gatewayId: string, address: string): Promise<void> {
  await db.query('UPDATE gateways SET address = $2 WHERE gateway_id = $1', [gatewayId, address]);
}

/**
 * The gateway heartbeat: one UPDATE per gateway per tick, however many hibernating sockets it
 * holds. It keeps every one of the gateway's `hibernating_requests` rows live (DESIGN §3).
 * Throws InvariantViolation once the reaper has forgotten the gateway: beating again cannot
 * help, registering anew does (gateway/heartbeat.ts).
 */
export async function heartbeatGateway(db: Queryable, gatewayId: string): Promise<void> {
  const result = await db.query('UPDATE gateways SET last_ping_at = now() WHERE gateway_id = $1', [gatewayId]);
  if (result.rowCount === 0) throw new InvariantViolation(`gateway ${gatewayId} is not registered`);
}

/** A clean shutdown: the gateway's rows go with it. */
export async function unregisterGateway(db: Queryable, gatewayId: string): Promise<void> {
  await db.query('DELETE FROM hibernating_requests WHERE gateway_id = $1', [gatewayId]);
  await db.query('DELETE FROM gateways WHERE gateway_id = $1', [gatewayId]);
}

/**
 * Forgets gateways silent for twice the threshold (their requests were swept after one), with
 * any request row still naming them, in one statement: no row outlives its gateway, so the sweep
 * never has to look for rows of gateways that do not exist. One that comes back finds its
 * heartbeat failing and registers anew (see gateway/heartbeat.ts).
 */
export async function deleteDeadGateways(db: Queryable, thresholdMs: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `WITH forgotten AS (
       DELETE FROM gateways WHERE last_ping_at < now() - make_interval(secs => $1::double precision / 1000)
       RETURNING gateway_id),
     swept AS (DELETE FROM hibernating_requests h USING forgotten f WHERE h.gateway_id = f.gateway_id)
     SELECT count(*)::int AS n FROM forgotten`,
    [thresholdMs * 2],
  );
  return rows[0]?.n ?? 0;
}

/** The other gateways whose heartbeat is within the threshold, with the address each serves on. */
export async function otherLiveGateways(
  db: Queryable,
  gatewayId: string,
  thresholdMs: number,
): Promise<{ gatewayId: string; address: string }[]> {
  const { rows } = await db.query<{ gateway_id: string; address: string }>(
    `SELECT gateway_id, address FROM gateways
     WHERE gateway_id <> $1 AND last_ping_at > now() - make_interval(secs => $2::double precision / 1000)`,
    [gatewayId, thresholdMs],
  );
  return rows.map((r) => ({ gatewayId: r.gateway_id, address: r.address }));
}
