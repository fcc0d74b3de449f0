/**
 * The rows of this gateway's hibernatable sockets in `hibernating_requests`: inserted when the
 * actor accepts a socket as hibernatable, before anything can hibernate it (H1), and deleted on
 * every way the socket ends (H4). The gateway heartbeat keeps them live (H2); a start's snapshot
 * reads them (DESIGN §1).
 */
import { deleteHibernatingRequest, insertHibernatingRequest } from '../db/hibernating-requests.js';
import type { Queryable } from '../db/pool.js';
import type { Logger } from '../log.js';

export class HibernationRegistry {
  /** Request ids whose row this gateway wrote and has not deleted. */
  private readonly rows = new Set<string>();

  constructor(
    private readonly db: Queryable,
    private readonly gatewayId: string,
  ) {}

  /** H1: writes the row (again, idempotently, for an offered socket); throws if it could not. */
  async register(requestId: string, actorId: string): Promise<void> {
    await insertHibernatingRequest(this.db, { gatewayId: this.gatewayId, requestId, actorId });
    this.rows.add(requestId);
  }

  /** H4: the row goes with the socket. Never throws. */
  async unregister(requestId: string, log: Logger): Promise<void> {
    if (!this.rows.delete(requestId)) return;
    try {
      await deleteHibernatingRequest(this.db, this.gatewayId, requestId);
    } catch (err) {
      // The reaper's sweep removes it once this gateway is gone; until then it is a closed
      // request in the snapshot, which the runner closes toward this gateway (L\M) or this
      // gateway closes toward the actor (on the restore report).
      log.error({ err }, 'deleting the socket row failed');
    }
  }
}
