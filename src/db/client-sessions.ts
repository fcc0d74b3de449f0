/**
 * Resumable client sessions (H10) in `client_sessions`: which gateway holds each one, and the
 * hash of its token (the token itself is only ever in the client's hands). A session is
 * resumable while its socket is held or was lost less than the retention ago; a gateway that
 * died without saying so holds its sessions until its heartbeat lapses past the threshold T.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { inTransaction, type Db, type Queryable } from './pool.js';

export const tokenHash = (token: string): Buffer => createHash('sha256').update(token).digest();

export async function insertSession(
  db: Queryable,
  row: { requestId: string; actorId: string; gatewayId: string; token: string },
): Promise<void> {
  await db.query('INSERT INTO client_sessions (request_id, actor_id, gateway_id, token_hash) VALUES ($1, $2, $3, $4)', [
    row.requestId,
    row.actorId,
    row.gatewayId,
    tokenHash(row.token),
  ]);
}

export type TakeOver = { ok: true; previousGatewayId: string } | { ok: false; why: 'invalid' | 'expired' };

/**
 * Moves a session to `gatewayId` if the token is its token, for that actor, and it has not expired; its old
 * gateway's hibernating row goes in the same transaction (the new gateway writes its own when
 * the actor accepts the resumed socket), so that no start's snapshot names the old holder.
 */
export async function takeOverSession(
  db: Db,
  request: { requestId: string; actorId: string; token: string; gatewayId: string; retentionMs: number },
): Promise<TakeOver> {
  return inTransaction(db, async (client) => {
    const { rows } = await client.query<{ actor_id: string; gateway_id: string; token_hash: Buffer; expired: boolean }>(
      `SELECT actor_id, gateway_id, token_hash,
              detached_at < now() - make_interval(secs => $2::double precision / 1000) AS expired
       FROM client_sessions WHERE request_id = $1 FOR UPDATE`,
      [request.requestId, request.retentionMs],
    );
    const row = rows[0];
    const hash = tokenHash(request.token);
    const matches = row && row.token_hash.length === hash.length && timingSafeEqual(row.token_hash, hash);
    if (!row || !matches || row.actor_id !== request.actorId) return { ok: false, why: 'invalid' };
    if (row.expired) return { ok: false, why: 'expired' };
    await client.query('UPDATE client_sessions SET gateway_id = $2, detached_at = NULL WHERE request_id = $1', [
      request.requestId,
      request.gatewayId,
    ]);
    await client.query('DELETE FROM hibernating_requests WHERE request_id = $1 AND gateway_id <> $2', [
      request.requestId,
      request.gatewayId,
    ]);
    return { ok: true, previousGatewayId: row.gateway_id };
  });
}

/** The session's socket was lost (or its gateway is shutting down): the retention starts now. */
export async function detachSession(db: Queryable, requestId: string, gatewayId: string): Promise<void> {
  await db.query(
    'UPDATE client_sessions SET detached_at = now() WHERE request_id = $1 AND gateway_id = $2 AND detached_at IS NULL',
    [requestId, gatewayId],
  );
}

/** The session ended for good; only its current gateway ends it. */
export async function deleteSession(db: Queryable, requestId: string, gatewayId: string): Promise<void> {
  await db.query('DELETE FROM client_sessions WHERE request_id = $1 AND gateway_id = $2', [requestId, gatewayId]);
}

/**
 * The sweep: sessions detached longer than the retention, and sessions held by gateways whose
 * heartbeat lapsed past the threshold (or that are gone): nobody can resume them any more.
 */
export async function deleteExpiredSessions(db: Queryable, retentionMs: number, thresholdMs: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM client_sessions s
     WHERE s.detached_at < now() - make_interval(secs => $1::double precision / 1000)
        OR (s.detached_at IS NULL AND NOT EXISTS (
              SELECT 1 FROM gateways g
              WHERE g.gateway_id = s.gateway_id
                AND g.last_ping_at > now() - make_interval(secs => $2::double precision / 1000)))`,
    [retentionMs, thresholdMs],
  );
  return rowCount ?? 0;
}
