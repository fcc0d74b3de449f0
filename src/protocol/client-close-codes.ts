/**
 * The close codes a client's WebSocket may receive from Dormouse, beside the standard ones the
 * `ws` library sends itself (1009 message too big). Each says what happened and what to do.
 */
export const ClientCloseCode = {
  /** The gateway is shutting down: reconnect. */
  GoingAway: 1001,
  /** Something failed inside the gateway; the log says what. */
  InternalError: 1011,
  /** The gateway lost its registration (it could not heartbeat for longer than T): reconnect (H2). */
  ServiceRestart: 1012,
  /** The actor refused the connection. */
  Rejected: 4400,
  /** H10: no session with that token (never given, or ended for good): open a new one. */
  SessionInvalid: 4401,
  /** H10: a frame broke the `dormouse.v1` rules (see protocol/session-protocol.ts); the reason says which. */
  SessionProtocolError: 4402,
  /** H10: the session's socket was lost longer ago than the retention: open a new one. */
  SessionExpired: 4411,
  /** H10: the session was resumed on another socket; this one is no longer it. */
  SessionResumed: 4415,
  /** No such actor. */
  ActorNotFound: 4404,
  /**
   * A message arrived out of order: a client message at the actor, or an actor frame (H9 seq)
   * at the gateway while the socket was active. A bug, or lost frames: reconnect.
   */
  MessageGap: 4409,
  /** The actor was destroyed. */
  ActorDestroyed: 4410,
  /** The actor stopped and this connection was not hibernatable: reconnect to wake it. */
  ActorStopped: 4412,
  /** More unacknowledged messages (count or bytes) than the gateway keeps for one connection. */
  TooManyPending: 4413,
  /**
   * The actor sent this connection more frames than its outbox keeps unacknowledged by the
   * gateway (H9): by default 4096 frames or 16 MiB per connection (`outboxLimits` in
   * defineActor; DEFAULT_OUTBOX_LIMITS in the runner protocol). The frames before the close
   * were all delivered; the ones past the bound were not sent. Reconnect and resynchronise.
   */
  OutboxFull: 4414,
  /**
   * The client did not read what the actor sent it: more output than the gateway buffers for one
   * connection (DORMOUSE_MAX_BUFFERED_BYTES, 16 MiB by default).
   */
  SlowClient: 4408,
  /**
   * The actor has as many hibernatable connections as a start's snapshot may carry
   * (DORMOUSE_MAX_HIBERNATABLE_PER_ACTOR, 10 000 by default): this one was not kept.
   */
  TooManyConnections: 4429,
  /** The actor does not know this connection (it was lost while hibernating): reconnect. */
  UnknownConnection: 4500,
  /** The actor did not wake within the wake timeout. */
  ActorUnavailable: 4503,
  /** The actor did not acknowledge a message within the acknowledgement timeout. */
  AckTimeout: 4504,
} as const;
export type ClientCloseCode = (typeof ClientCloseCode)[keyof typeof ClientCloseCode];
