/**
 * `GET /actors/:actorId/ws/*`: tunnelled client WebSockets, and their hibernation (DESIGN §5).
 *
 * The hub holds every client socket of this gateway. It opens a socket on the actor through the
 * one route to a running actor (waking it), registers hibernatable ones the moment the actor
 * accepts them (H1), hibernates them when the actor stops (H7), and when the actor runs again
 * re-attaches those its start restored and offers it the rest (H5, H8). Every way a socket ends
 * deletes its row (H4). Runner frames reach it only once the tunnel has checked that the runner
 * speaks for the socket.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Config } from '../config.js';
import { getActor, getActors } from '../db/actors.js';
import { deleteSession, detachSession, insertSession } from '../db/client-sessions.js';
import { countLiveHibernatingRequests } from '../db/hibernating-requests.js';
import type { ActorStateNotice } from '../db/channels.js';
import type { Db } from '../db/pool.js';
import {
  ActorDestroyed,
  ActorNotFound,
  ActorUnavailable,
  BadRequest,
  DormouseError,
  InternalError,
  NotHosted,
} from '../errors.js';
import type { Logger } from '../log.js';
import { ClientCloseCode } from '../protocol/client-close-codes.js';
import type { GatewayTunnelFrame, RunnerTunnelFrame, WsRestored } from '../protocol/runner-protocol.js';
import { parseClientSessionFrame, SESSION_SUBPROTOCOL } from '../protocol/session-protocol.js';
import { wsBuffer } from '../util/ws-data.js';
import type { ActorRouter } from './actor-router.js';
import { ClientSocket, type OpenOutcome, type SessionStart } from './client-socket.js';
import type { HibernationRegistry } from './hibernation-registry.js';
import { rejectUpgrade } from './reject-upgrade.js';
import { awaitSessionStart } from './session-start.js';
import type { HeldRequest } from './speaks-for.js';
import type { Waker } from './wakes.js';

export interface HubDeps {
  db: Db;
  config: Config;
  log: Logger;
  gatewayId: string;
  router: ActorRouter;
  waker: Waker;
  registry: HibernationRegistry;
  /** Sends a frame to a runner, wherever it is connected; false if it is connected nowhere known. */
  sendToRunner: (runnerId: string, frame: GatewayTunnelFrame) => boolean;
  /** Whether the runner is connected to this gateway (else frames with it cross the bus). */
  isLocalRunner: (runnerId: string) => boolean;
  /** A session was resumed here: the gateway that held it before lets its old socket go (H10). */
  announceSessionTaken: (requestId: string) => void;
}

type ActorFrame = Extract<RunnerTunnelFrame['message'], { kind: 'wsMessage' }>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Headers of the client's handshake that are not the actor's business. */
const HANDSHAKE_HEADERS = /^(connection|upgrade|sec-websocket-.*|content-length|transfer-encoding)$/;
const TICK_MS = 500;
/** Actors re-read per query when notices may have been missed. */
const RESYNC_BATCH = 1000;
/** The shortest time between two requests that a runner on another gateway resend to one socket. */
const REMOTE_RESYNC_INTERVAL_MS = 1000;

export class ClientSocketHub {
  private readonly wss: WebSocketServer;
  private readonly sockets = new Map<string, ClientSocket>();
  private readonly byActor = new Map<string, Set<ClientSocket>>();
  private readonly ticker: NodeJS.Timeout;
  private readonly log: Logger;
  /** Bytes of client messages the actors have not acknowledged, over all sockets (the gateway-wide budget). */
  private pendingBytes = 0;
  /** Whether the budget is exceeded and no client socket is read. */
  private readingPaused = false;
  /** Sessions (H10) whose row this gateway wrote and holds. */
  private readonly sessionRows = new Set<string>();

  constructor(private readonly deps: HubDeps) {
    this.log = deps.log.child({ part: 'client-sockets' });
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: deps.config.gateway.maxMessageBytes,
      // H10: a client asking for resumable sessions gets them; any other subprotocol is not ours.
      handleProtocols: (offered) => (offered.has(SESSION_SUBPROTOCOL) ? SESSION_SUBPROTOCOL : false),
    });
    this.ticker = setInterval(() => this.enforceDeadlines(), TICK_MS);
    this.ticker.unref();
  }

  /** Live sockets and how many hibernate, for health and metrics. */
  stats(): { sockets: number; hibernating: number; pendingBytes: number } {
    let hibernating = 0;
    let pendingBytes = 0;
    for (const s of this.sockets.values()) {
      if (s.phase === 'hibernating') hibernating++;
      pendingBytes += s.pendingSummary.bytes;
    }
    return { sockets: this.sockets.size, hibernating, pendingBytes };
  }

  /** The socket of that request, as the speaks-for rule sees it. */
  held(requestId: string): HeldRequest | undefined {
    return this.sockets.get(requestId);
  }

  // --- Opening ------------------------------------------------------------------------------

  /** Upgrades `/actors/:actorId/ws/*`, answering bad ids and unknown actors with a JSON HTTP error. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer, actorId: string, path: string): void {
    if (!UUID.test(actorId)) return rejectUpgrade(socket, new BadRequest('actorId must be a UUID'));
    getActor(this.deps.db, actorId).then(
      (actor) => {
        if (!actor) return rejectUpgrade(socket, new ActorNotFound(actorId));
        if (actor.state === 'destroyed') return rejectUpgrade(socket, new ActorDestroyed(actorId));
        this.wss.handleUpgrade(request, socket, head, (ws) => this.accept(ws, actorId, path, actorHeaders(request)));
      },
      (err: unknown) => {
        this.log.error({ err, actorId }, 'reading the actor for an upgrade failed');
        rejectUpgrade(socket, new InternalError());
      },
    );
  }

  private accept(ws: WebSocket, actorId: string, path: string, headers: Record<string, string>): void {
    if (ws.protocol !== SESSION_SUBPROTOCOL) return void this.attach(ws, actorId, path, headers);
    const { db, gatewayId, config } = this.deps;
    const deps = { db, gatewayId, retentionMs: config.timing.sessionRetentionMs };
    void awaitSessionStart(ws, actorId, randomUUID(), deps).then((started) => {
      if (!started) return;
      const socket = this.attach(ws, actorId, path, headers, started.start);
      for (const { data, isBinary } of started.early) this.onClientMessage(socket, data, isBinary);
    });
  }

  private attach(
    ws: WebSocket,
    actorId: string,
    path: string,
    headers: Record<string, string>,
    session?: SessionStart,
  ): ClientSocket {
    const host = { gatewayId: this.deps.gatewayId, sendToRunner: this.deps.sendToRunner, log: this.log };
    const socket = new ClientSocket(actorId, path, headers, ws, host, this.deps.config.gateway, session);
    if (session?.resumed) this.onSessionTaken(socket.requestId);
    this.sockets.set(socket.requestId, socket);
    let set = this.byActor.get(actorId);
    if (!set) this.byActor.set(actorId, (set = new Set()));
    set.add(socket);
    if (this.readingPaused) socket.pauseReading(true);
    ws.on('message', (data, isBinary) => this.onClientMessage(socket, wsBuffer(data), isBinary));
    ws.on('close', (code, reason) => void this.onClientClose(socket, code, reason.toString()));
    ws.on('error', (err) => this.log.debug({ ...ids(socket), err: err.message }, 'client socket error'));
    this.log.debug(
      { ...ids(socket), path, session: socket.isSession, resumed: !!session?.resumed },
      'client socket opened',
    );
    if (session?.resumed) this.deps.announceSessionTaken(socket.requestId);
    void this.open(socket);
    return socket;
  }

  /**
   * H10: the session was resumed on another socket (here or on another gateway). The old one
   * goes quietly: the actor keeps the connection, and its row moved with the session.
   */
  onSessionTaken(requestId: string): void {
    const old = this.sockets.get(requestId);
    if (!old) return;
    old.closeClient(ClientCloseCode.SessionResumed, 'the session was resumed on another socket');
    this.forget(old);
    this.sessionRows.delete(requestId);
    void this.deps.registry.unregister(old.requestId, old.log);
    old.log.info('session resumed elsewhere; its old socket let go');
  }

  /** Routes the open to the running actor (waking it); a failure closes the client with its code. */
  private async open(socket: ClientSocket): Promise<void> {
    // An open that timed out may still be accepted, late: the socket is then the actor's, and the
    // route, still waiting for a newer generation, must neither wake the actor nor fail the socket.
    const opening = () => socket.phase === 'opening';
    try {
      await this.deps.router.route(
        socket.actorId,
        'websocket',
        async (actor) => {
          if (!opening()) return; // closed meanwhile, or restored by a start
          // A resumed session continues a connection the actor holds: offered, it is not opened anew.
          const outcome = await this.requestOpenBounded(socket, actor.runnerId, actor.generation, socket.isResumed);
          if (outcome === 'not_hosted')
            throw new NotHosted(`runner ${actor.runnerId} does not host generation ${actor.generation}`);
        },
        opening,
      );
    } catch (err) {
      if (!opening()) return;
      if (!(err instanceof DormouseError)) socket.log.error({ err }, 'opening a client socket failed');
      this.closeWithError(socket, err instanceof DormouseError ? err : new InternalError());
    }
  }

  /** An open request the actor does not answer within the acknowledgement timeout fails. */
  private async requestOpenBounded(
    socket: ClientSocket,
    runnerId: string,
    generation: number,
    offer: boolean,
  ): Promise<OpenOutcome> {
    const timer = setTimeout(() => socket.settleOpen('not_hosted'), this.deps.config.timing.ackTimeoutMs);
    try {
      return await socket.requestOpen(runnerId, generation, offer);
    } finally {
      clearTimeout(timer);
    }
  }

  // --- Client events ------------------------------------------------------------------------

  private onClientMessage(socket: ClientSocket, data: Buffer, binary: boolean): void {
    if (socket.phase === 'closed') return;
    if (socket.isSession) return this.onSessionFrame(socket, data, binary);
    this.takeClientMessage(socket, data, binary);
  }

  /** H10: a session's frame: a numbered message, or an acknowledgement of the actor's frames. */
  private onSessionFrame(socket: ClientSocket, raw: Buffer, binary: boolean): void {
    const parsed = binary ? null : parseClientSessionFrame(raw.toString('utf8'));
    if (!parsed?.ok) return this.sessionProtocolError(socket, parsed ? parsed.error : 'binary frame');
    const frame = parsed.message;
    if (frame.t === 'ack') {
      if (!socket.clientAcknowledged(frame.seq))
        this.sessionProtocolError(socket, `acknowledged frame ${frame.seq}, never sent`);
      return;
    }
    if (frame.t !== 'msg') return this.sessionProtocolError(socket, `${frame.t} after the session started`);
    if (frame.index !== socket.nextClientIndex)
      return this.sessionProtocolError(socket, `expected message ${socket.nextClientIndex}, got ${frame.index}`);
    this.takeClientMessage(socket, Buffer.from(frame.data, frame.binary ? 'base64' : 'utf8'), frame.binary);
  }

  private sessionProtocolError(socket: ClientSocket, error: string): void {
    socket.log.warn({ error }, 'session protocol error; closing the client');
    this.closeByGateway(socket, ClientCloseCode.SessionProtocolError, error);
  }

  private takeClientMessage(socket: ClientSocket, data: Buffer, binary: boolean): void {
    if (!this.trackPending(socket, () => socket.takeClientMessage(data, binary))) {
      const { frames, bytes } = socket.pendingSummary;
      socket.log.warn({ frames, bytes }, 'pending limit reached; closing the client');
      return this.closeByGateway(socket, ClientCloseCode.TooManyPending, 'too many unacknowledged messages');
    }
    if (socket.phase === 'hibernating') this.wakeFor(socket);
  }

  /**
   * The client closed: the row goes; the actor hears now if it holds the socket, else at its next
   * start. A session whose socket was lost (no close frame: 1006) waits for its client to resume.
   */
  private async onClientClose(socket: ClientSocket, code: number, reason: string): Promise<void> {
    const phase = socket.phase;
    if (phase === 'closed') return this.forget(socket);
    if (socket.resumable && code === 1006) return this.sessionAway(socket);
    socket.closeClient(code, reason);
    this.forget(socket);
    this.endSession(socket);
    await this.deps.registry.unregister(socket.requestId, socket.log);
    this.log.debug({ ...ids(socket), code, phase }, 'client closed');
    if (phase === 'active' || phase === 'opening') socket.tellActorClosed(closeCodeForActor(code), reason);
    // H7: a close during hibernation wakes the actor, whose start reports the disconnect (M\L).
    if (phase === 'hibernating') this.deps.waker.wake(socket.actorId, 'websocket');
  }

  // --- Runner events ------------------------------------------------------------------------

  /** A frame from the runner the socket is attached to (or from its start), as the tunnel judged. */
  fromRunner(runnerId: string, frame: RunnerTunnelFrame): void {
    const socket = this.sockets.get(frame.requestId);
    if (!socket) return;
    const { message } = frame;
    switch (message.kind) {
      case 'wsOpenAck':
        return void this.onAccepted(socket, runnerId, message.hibernatable);
      case 'wsAck':
        return this.trackPending(socket, () => socket.acknowledge(message.index));
      case 'wsMessage':
        return this.onActorFrame(socket, runnerId, frame.generation, message);
      case 'wsClose':
        return void this.closeByActor(socket, message.code, message.reason);
      case 'notHosted':
        // An open retries on the next generation; messages stay pending.
        return socket.settleOpen('not_hosted');
      case 'httpResponse':
        return socket.log.debug({ runnerId }, 'an HTTP response for a WebSocket; dropped');
    }
  }

  /**
   * H9: each actor frame reaches the client once, in order. A seq past the next one while the
   * socket is active means a frame was lost: the client is told rather than left with a hole
   * (while opening or hibernating the host's resend fills it in).
   */
  private onActorFrame(socket: ClientSocket, runnerId: string, generation: number, message: ActorFrame): void {
    const outcome = socket.deliver(runnerId, generation, message.seq, message.data, message.binary);
    if (outcome === 'delivered') return this.checkOutput(socket);
    if (outcome === 'duplicate')
      return socket.log.debug({ seq: message.seq }, 'actor frame already delivered; dropped');
    if (socket.phase !== 'active')
      return socket.log.debug({ seq: message.seq }, 'actor frame past a missing one; dropped');
    if (!this.deps.isLocalRunner(runnerId)) {
      // Lost on the bus, not by the actor: its outbox still has it.
      socket.log.debug({ seq: message.seq, runnerId }, 'actor frame past a missing one; asking the runner to resend');
      return socket.resync(Date.now(), REMOTE_RESYNC_INTERVAL_MS);
    }
    socket.log.warn({ seq: message.seq, runnerId, generation }, 'actor frame past a missing one; closing the client');
    this.closeByGateway(socket, ClientCloseCode.MessageGap, 'an actor frame was lost');
  }

  /** Bus messages may have been lost: every socket attached to a runner on another gateway re-synchronises. */
  resyncRemote(): void {
    const now = Date.now();
    for (const socket of this.sockets.values())
      if (socket.runnerId && !this.deps.isLocalRunner(socket.runnerId)) socket.resync(now, 0);
  }

  /** A runner (re)connected: what its active sockets sent may have been lost with the old socket, and opens go again. */
  runnerConnected(runnerId: string): void {
    for (const socket of this.sockets.values()) {
      if (socket.runnerId !== runnerId) continue;
      socket.resend();
      socket.resendOpen();
    }
  }

  /**
   * H1: a hibernatable connection is registered before anything can hibernate it. On an offer
   * the row is written again (idempotently): the start that missed it may have missed it
   * because it was gone.
   */
  private async onAccepted(socket: ClientSocket, runnerId: string, hibernatable: boolean): Promise<void> {
    if (socket.phase !== 'opening') return;
    const offered = socket.hibernatable; // an offered socket hibernated: its row is counted already
    socket.acceptedAs(hibernatable);
    const { registry } = this.deps;
    if (hibernatable) {
      try {
        if (!offered && !(await this.roomToHibernate(socket.actorId))) {
          socket.log.warn('the actor has as many hibernatable connections as a snapshot may carry; closing');
          return this.closeAccepted(socket, ClientCloseCode.TooManyConnections, 'too many hibernatable connections');
        }
        await registry.register(socket.requestId, socket.actorId);
      } catch (err) {
        socket.log.error({ err }, 'registering a hibernatable socket failed');
        return this.closeAccepted(socket, ClientCloseCode.ActorUnavailable, 'could not register the connection');
      }
    }
    if (socket.isSession && !(await this.recordSession(socket))) return;
    if (socket.phase !== 'opening') return registry.unregister(socket.requestId, socket.log); // closed while registering
    if (!hibernatable) await registry.unregister(socket.requestId, socket.log); // an offer taken as ordinary
    socket.activate(runnerId, socket.generation, socket.lastAcked);
    socket.settleOpen('accepted');
    socket.announceSession();
    this.log.debug({ ...ids(socket), hibernatable, generation: socket.generation }, 'client socket accepted');
  }

  /**
   * H10: a new session's row goes in before its client learns the token (a resumed one's row
   * moved here already). False, the socket closed, if it could not be written.
   */
  private async recordSession(socket: ClientSocket): Promise<boolean> {
    const token = socket.sessionToken;
    if (socket.isResumed || this.sessionRows.has(socket.requestId) || !token) return true;
    try {
      const { db, gatewayId } = this.deps;
      await insertSession(db, { requestId: socket.requestId, actorId: socket.actorId, gatewayId, token });
      this.sessionRows.add(socket.requestId);
      return true;
    } catch (err) {
      socket.log.error({ err }, 'recording the session failed');
      this.closeAccepted(socket, ClientCloseCode.ActorUnavailable, 'could not record the session');
      return false;
    }
  }

  /** H10: the session's client socket was lost; the session stays for the retention. */
  private sessionAway(socket: ClientSocket): void {
    socket.clientAway(Date.now());
    socket.log.info('session client away; waiting for it to resume');
    detachSession(this.deps.db, socket.requestId, this.deps.gatewayId).catch((err: unknown) =>
      socket.log.error({ err }, 'recording the lost session socket failed'),
    );
  }

  /** H10: the session ended for good (its client closed it, the actor did, or the gateway). */
  private endSession(socket: ClientSocket): void {
    if (!socket.isSession) return;
    this.sessionRows.delete(socket.requestId);
    deleteSession(this.deps.db, socket.requestId, this.deps.gatewayId).catch((err: unknown) =>
      socket.log.error({ err }, 'deleting the session failed'),
    );
  }

  /**
   * Whether the actor may have one more hibernatable socket: a start's snapshot lists them all in
   * Temporal payloads (2 MB), so they are capped (DORMOUSE_MAX_HIBERNATABLE_PER_ACTOR). Concurrent
   * accepts may overshoot by a few; the default leaves room for that.
   */
  private async roomToHibernate(actorId: string): Promise<boolean> {
    const { db, config } = this.deps;
    const count = await countLiveHibernatingRequests(db, actorId, config.timing.hibernationThresholdMs);
    return count < config.gateway.maxHibernatablePerActor;
  }

  /** Refuses a socket the actor has just accepted: the client is closed, and the actor told. */
  private closeAccepted(socket: ClientSocket, code: number, reason: string): void {
    this.closeByGateway(socket, code, reason);
    socket.tellActorClosed(code, reason);
  }

  /**
   * A start of the actor reports what it restored (H5). Those sockets resume where the actor
   * left off; restored requests that were this gateway's (`wasMine`: its row was in the start's
   * snapshot) and that it no longer holds are closed toward the actor; this gateway's other
   * sockets for the actor are offered to it (H8).
   */
  onRestored(runnerId: string, message: WsRestored, wasMine: (requestId: string) => boolean): void {
    const { actorId, generation } = message;
    const restored = new Map(message.requests.map((r) => [r.requestId, r.lastIndex]));
    const sockets = [...(this.byActor.get(actorId) ?? [])];
    const held = new Set(sockets.map((s) => s.requestId));
    for (const requestId of restored.keys()) {
      if (held.has(requestId) || !wasMine(requestId)) continue;
      this.deps.sendToRunner(runnerId, {
        type: 'tunnel',
        requestId,
        actorId,
        generation,
        message: { kind: 'wsClose', code: 1001, reason: 'the client went away while the actor was stopped' },
      });
    }
    for (const socket of sockets) {
      if (!needsReattach(socket, generation)) continue;
      const lastIndex = restored.get(socket.requestId);
      if (lastIndex !== undefined) {
        this.trackPending(socket, () => socket.activate(runnerId, generation, lastIndex));
        this.log.debug({ ...ids(socket), generation, lastIndex }, 'client socket restored');
      } else {
        void this.offer(socket, runnerId, generation);
      }
    }
    this.log.debug({ actorId, generation, restored: restored.size }, 'actor restored connections');
  }

  /** H8: a hibernating socket the start did not restore is offered to the running actor. */
  private async offer(socket: ClientSocket, runnerId: string, generation: number): Promise<void> {
    const outcome = await this.requestOpenBounded(socket, runnerId, generation, true);
    // Back to hibernating the normal way: with messages waiting, that wakes the actor again.
    if (outcome === 'not_hosted' && socket.phase === 'opening') this.onActorStopped(socket);
  }

  private async closeByActor(socket: ClientSocket, code: number, reason: string): Promise<void> {
    socket.closeClient(code, reason);
    this.forget(socket);
    this.endSession(socket);
    await this.deps.registry.unregister(socket.requestId, socket.log);
    this.log.debug({ ...ids(socket), code, reason }, 'closed by the actor');
  }

  // --- Actor state --------------------------------------------------------------------------

  /** The registry's state changes drive hibernation (H7) and, as a fallback, re-attachment. */
  onActorState(notice: ActorStateNotice): void {
    const sockets = this.byActor.get(notice.actorId);
    if (!sockets) return;
    for (const socket of [...sockets]) {
      socket.noteActorState(notice.state, notice.generation);
      if (notice.state === 'destroyed') {
        this.closeWithError(socket, new ActorDestroyed(notice.actorId), false);
        continue;
      }
      // An open on a generation that is gone is over: the route goes on to the newer one.
      if (socket.phase === 'opening' && socket.generation < notice.generation) socket.settleOpen('not_hosted');
      const newerRuns = notice.state === 'running' && notice.runnerId !== null && socket.generation < notice.generation;
      if (socket.phase === 'active' && actorLeft(socket, notice)) {
        // A newer generation already runs (its `stopping` notice was missed): offered below, not woken.
        if (newerRuns && socket.hibernatable) socket.hibernate();
        else this.onActorStopped(socket);
      }
      if (newerRuns && notice.runnerId && socket.phase === 'hibernating') {
        // The start's restore report did not reach this gateway: offer the socket instead.
        void this.offer(socket, notice.runnerId, notice.generation);
      }
    }
  }

  /**
   * The LISTEN connection came back: `running` and `stopping` notices may have been missed, so
   * every actor this gateway holds sockets for is read again and its row applied as a notice.
   * Hibernating sockets still waiting for their actor ask again on the next tick.
   */
  async resync(): Promise<void> {
    const actorIds = [...this.byActor.keys()];
    try {
      for (let i = 0; i < actorIds.length; i += RESYNC_BATCH) {
        for (const actor of await getActors(this.deps.db, actorIds.slice(i, i + RESYNC_BATCH))) {
          const { actorId, state, generation, runnerId } = actor;
          this.onActorState({ actorId, state, generation, runnerId });
        }
      }
      this.log.info({ actors: actorIds.length }, 'client sockets re-synchronised with the registry');
    } catch (err) {
      this.log.error({ err }, 're-reading the registry for client sockets failed');
    }
  }

  /** H7: a hibernatable socket hibernates; any other closes with a clear code. */
  private onActorStopped(socket: ClientSocket): void {
    if (!socket.hibernatable) return this.closeByGateway(socket, ClientCloseCode.ActorStopped, 'actor stopped', false);
    socket.hibernate();
    this.log.debug({ ...ids(socket), generation: socket.generation }, 'client socket hibernating');
    // H6: messages the actor had not acknowledged wake it at once.
    if (socket.hasPending) this.wakeFor(socket);
  }

  /** A hibernating socket needs its actor: wake it, and give up on it after the wake timeout. */
  private wakeFor(socket: ClientSocket): void {
    socket.startWakeClock(Date.now(), this.deps.config.timing.wakeTimeoutMs);
    this.deps.waker.wake(socket.actorId, 'websocket');
  }

  // --- Ending -------------------------------------------------------------------------------

  /** The socket edge of the error model: the client is closed with the error's close code. */
  private closeWithError(socket: ClientSocket, err: DormouseError, tellActor = true): void {
    this.closeByGateway(socket, err.closeCode, err.message, tellActor);
  }

  /** The gateway closes a socket (limits, timeouts, destroy, shutdown); the actor hears if it holds it. */
  private closeByGateway(socket: ClientSocket, code: number, reason: string, tellActor = true): void {
    if (socket.phase === 'closed') return;
    const phase = socket.phase;
    socket.closeClient(code, reason);
    this.forget(socket);
    this.endSession(socket);
    void this.deps.registry.unregister(socket.requestId, socket.log);
    if (tellActor && phase === 'active') socket.tellActorClosed(code, reason);
    socket.log.info({ code, reason }, 'client socket closed by the gateway');
  }

  private forget(socket: ClientSocket): void {
    if (this.sockets.delete(socket.requestId)) {
      this.pendingBytes -= socket.pendingSummary.bytes;
      this.applyBackPressure();
    }
    const set = this.byActor.get(socket.actorId);
    set?.delete(socket);
    if (set?.size === 0) this.byActor.delete(socket.actorId);
  }

  // --- Memory -------------------------------------------------------------------------------

  /** Runs a change to a socket's pending messages, keeping the gateway-wide total and its back-pressure. */
  private trackPending<T>(socket: ClientSocket, change: () => T): T {
    const before = socket.pendingSummary.bytes;
    const result = change();
    this.pendingBytes += socket.pendingSummary.bytes - before;
    this.applyBackPressure();
    return result;
  }

  /**
   * Past the gateway-wide budget of pending bytes no client socket is read (`ws.pause()`: TCP
   * pushes back on the clients) until the actors' acknowledgements bring it under half the
   * budget (not just under it, so that reads do not flap at the edge).
   */
  private applyBackPressure(): void {
    const budget = this.deps.config.gateway.gatewayPendingBytes;
    const over = this.pendingBytes > (this.readingPaused ? budget / 2 : budget);
    if (over === this.readingPaused) return;
    this.readingPaused = over;
    for (const socket of this.sockets.values()) socket.pauseReading(over);
    this.log.info(
      { pendingBytes: this.pendingBytes, sockets: this.sockets.size },
      over
        ? 'pending budget exceeded; client reads paused'
        : 'pending back under half the budget; client reads resumed',
    );
  }

  /** A client that does not read what its actor sends is closed before its output grows without bound. */
  private checkOutput(socket: ClientSocket): void {
    const buffered = socket.bufferedBytes;
    if (buffered <= this.deps.config.gateway.maxBufferedBytes) return;
    socket.log.warn({ buffered }, 'client does not read its output; closing it');
    this.closeByGateway(socket, ClientCloseCode.SlowClient, 'too much output the client did not read');
  }

  /** Acknowledgement and wake timeouts (DESIGN §5 limits). */
  private enforceDeadlines(): void {
    const now = Date.now();
    const { ackTimeoutMs, sessionRetentionMs } = this.deps.config.timing;
    for (const socket of [...this.sockets.values()]) {
      const awaySince = socket.awaySince;
      if (awaySince !== null && now - awaySince > sessionRetentionMs) {
        socket.log.info('session not resumed within the retention; ended');
        this.closeByGateway(socket, ClientCloseCode.GoingAway, 'the session was not resumed in time');
      } else if (socket.ackOverdue(now, ackTimeoutMs)) {
        this.closeByGateway(socket, ClientCloseCode.AckTimeout, 'the actor did not acknowledge a message in time');
      } else if (socket.wakeOverdue(now)) {
        this.closeWithError(socket, new ActorUnavailable('the actor did not wake in time'));
      } else if (socket.phase === 'hibernating' && socket.hasPending) {
        // Still waiting for its actor: asks again (the Waker sends only if no wake went out
        // since the actor's last state change, e.g. one dropped while it was stopping).
        this.deps.waker.wake(socket.actorId, 'websocket');
      }
    }
  }

  /** H2: this gateway's registration lapsed; its hibernatable sockets are no longer claimed. */
  abandonHibernatable(): void {
    for (const socket of [...this.sockets.values()]) {
      if (socket.hibernatable)
        this.closeByGateway(socket, ClientCloseCode.ServiceRestart, 'gateway lost its registration; reconnect');
    }
  }

  /**
   * Gateway shutdown: every client is told to go away. Sessions stay: the actor keeps their
   * connections, and their clients resume on another gateway within the retention (H10).
   */
  async close(): Promise<void> {
    clearInterval(this.ticker);
    const detached: Promise<void>[] = [];
    for (const socket of [...this.sockets.values()]) {
      if (!socket.isSession) {
        this.closeByGateway(socket, ClientCloseCode.GoingAway, 'gateway shutting down');
        continue;
      }
      socket.closeClient(ClientCloseCode.GoingAway, 'gateway shutting down; resume on another');
      this.forget(socket);
      detached.push(detachSession(this.deps.db, socket.requestId, this.deps.gatewayId));
    }
    this.wss.close();
    await Promise.allSettled(detached);
  }
}

/** Whether a state notice means the actor no longer runs the generation the socket is attached to. */
function actorLeft(socket: ClientSocket, notice: ActorStateNotice): boolean {
  if (notice.generation > socket.generation) return true;
  // A late `starting` for the socket's own generation is not a stop (a restore may attach early).
  return notice.generation === socket.generation && notice.state !== 'running' && notice.state !== 'starting';
}

/** A socket that a start of `generation` must restore or be offered. */
function needsReattach(socket: ClientSocket, generation: number): boolean {
  return socket.phase === 'hibernating' || (socket.phase === 'active' && socket.generation < generation);
}

/** The client's own close codes pass to the actor; reserved ones become "gone away". */
function closeCodeForActor(code: number): number {
  return code >= 1000 && code <= 4999 ? code : 1001;
}

function actorHeaders(request: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined || HANDSHAKE_HEADERS.test(name)) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

/** A socket's ids for a log line, without making it a logger of its own. */
function ids(socket: ClientSocket): { actorId: string; requestId: string } {
  return { actorId: socket.actorId, requestId: socket.requestId };
}
