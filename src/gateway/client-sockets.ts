/**
 * `GET /actors/:actorId/ws/*`: tunnelled client WebSockets, and their hibernation (DESIGN §5).
 *
 * The hub holds every client socket of this gateway. It opens a socket on the actor (waking it),
 * registers hibernatable ones in Postgres the moment the actor accepts them (H1), hibernates them
 * when the actor stops (H7), and when the actor runs again re-attaches those its start restored
 * and offers it the rest (H5, H8). Every way a socket ends deletes its row (H4).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Client } from '@temporalio/client';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Config } from '../config.js';
import { getActor } from '../db/actors.js';
import type { ActorStateNotice } from '../db/channels.js';
import { deleteHibernatingRequest, insertHibernatingRequest } from '../db/hibernating-requests.js';
import type { Db } from '../db/pool.js';
import type { Logger } from '../log.js';
import { ClientCloseCode } from '../protocol/client-close-codes.js';
import type { GatewayToRunner, RunnerToGateway } from '../protocol/runner-protocol.js';
import { signalActor } from '../temporal-client.js';
import { wakeSignal } from '../workflows/actor-api.js';
import type { ActorWatch } from './actor-watch.js';
import { ClientSocket, type OpenOutcome } from './client-socket.js';
import { HttpError } from './errors.js';
import { rejectUpgrade } from './reject-upgrade.js';
import type { TunnelRunner, TunnelSink } from './runner-connection.js';

export interface HubDeps {
  db: Db;
  client: Client;
  config: Config;
  log: Logger;
  gatewayId: string;
  watch: ActorWatch;
  /** Told of every wake the hub asks for (metrics). */
  onWake: (actorId: string) => void;
  /** Sends a frame to a runner connected to this gateway; false if it is not. */
  sendToRunner(runnerId: string, frame: GatewayToRunner): boolean;
}

type FromRunner = Extract<RunnerToGateway, { type: 'wsOpenAck' | 'wsAck' | 'wsMessage' | 'wsClose' | 'wsRestored' }>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Headers of the client's handshake that are not the actor's business. */
const HANDSHAKE_HEADERS = /^(connection|upgrade|sec-websocket-.*|content-length|transfer-encoding)$/;
const TICK_MS = 500;

export class ClientSocketHub implements TunnelSink {
  private readonly wss: WebSocketServer;
  private readonly sockets = new Map<string, ClientSocket>();
  private readonly byActor = new Map<string, Set<ClientSocket>>();
  /** Per actor: the last state notice seen, and the one a wake was last sent for. */
  private readonly lastSeen = new Map<string, string>();
  private readonly wokenFor = new Map<string, string>();
  private readonly ticker: NodeJS.Timeout;
  private readonly log: Logger;

  constructor(private readonly deps: HubDeps) {
    this.log = deps.log.child({ part: 'client-sockets' });
    this.wss = new WebSocketServer({ noServer: true, maxPayload: deps.config.gateway.maxMessageBytes });
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

  // --- Opening ------------------------------------------------------------------------------

  /** Upgrades `/actors/:actorId/ws/*`, answering bad ids and unknown actors with a JSON HTTP error. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer, actorId: string, path: string): void {
    if (!UUID.test(actorId)) return rejectUpgrade(socket, 400, 'bad_request', 'actorId must be a UUID');
    getActor(this.deps.db, actorId).then(
      (actor) => {
        if (!actor) return rejectUpgrade(socket, 404, 'actor_not_found', `no actor ${actorId}`);
        if (actor.state === 'destroyed') return rejectUpgrade(socket, 404, 'actor_destroyed', `actor ${actorId} was destroyed`);
        this.wss.handleUpgrade(request, socket, head, (ws) => this.accept(ws, actorId, path, actorHeaders(request)));
      },
      (err: unknown) => {
        this.log.error({ err, actorId }, 'reading the actor for an upgrade failed');
        rejectUpgrade(socket, 500, 'internal', 'internal error');
      },
    );
  }

  private accept(ws: WebSocket, actorId: string, path: string, headers: Record<string, string>): void {
    const socket = new ClientSocket(actorId, path, headers, ws, { gatewayId: this.deps.gatewayId, sendToRunner: this.deps.sendToRunner, log: this.log }, this.deps.config.gateway);
    this.sockets.set(socket.requestId, socket);
    let set = this.byActor.get(actorId);
    if (!set) this.byActor.set(actorId, (set = new Set()));
    set.add(socket);
    ws.on('message', (data, isBinary) => this.onClientMessage(socket, toBuffer(data), isBinary));
    ws.on('close', (code, reason) => void this.onClientClose(socket, code, reason.toString()));
    ws.on('error', (err) => this.log.debug({ ...ids(socket), err: err.message }, 'client socket error'));
    this.log.debug({ ...ids(socket), path }, 'client socket opened');
    void this.open(socket);
  }

  /** Waits (waking the actor) until it runs, then asks it to accept the connection. */
  private async open(socket: ClientSocket): Promise<void> {
    const deadline = Date.now() + this.deps.config.timing.wakeTimeoutMs;
    let staleGeneration: number | undefined;
    try {
      for (;;) {
        const actor = await this.deps.watch.waitUntilRunning(socket.actorId, {
          deadline,
          wake: () => this.wake(socket.actorId, true),
          ...(staleGeneration === undefined ? {} : { staleGeneration }),
        });
        if (socket.phase !== 'opening') return; // closed meanwhile, or restored by a start
        const outcome = await this.requestOpenBounded(socket, actor.runnerId, actor.generation, false);
        if (outcome !== 'not_hosted') return;
        staleGeneration = actor.generation;
      }
    } catch (err) {
      if (socket.phase === 'closed') return;
      if (err instanceof HttpError && err.code === 'actor_destroyed') return this.closeByGateway(socket, ClientCloseCode.ActorDestroyed, 'actor destroyed');
      if (err instanceof HttpError && err.code === 'actor_not_found') return this.closeByGateway(socket, ClientCloseCode.ActorNotFound, 'no such actor');
      if (!(err instanceof HttpError)) socket.log.error({ err }, 'opening a client socket failed');
      this.closeByGateway(socket, ClientCloseCode.ActorUnavailable, 'actor did not become ready in time');
    }
  }

  /** An open request the actor does not answer within the acknowledgement timeout fails. */
  private async requestOpenBounded(socket: ClientSocket, runnerId: string, generation: number, offer: boolean): Promise<OpenOutcome> {
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
    if (!socket.takeClientMessage(data, binary)) {
      const { frames, bytes } = socket.pendingSummary;
      socket.log.warn({ frames, bytes }, 'pending limit reached; closing the client');
      return this.closeByGateway(socket, ClientCloseCode.TooManyPending, 'too many unacknowledged messages');
    }
    if (socket.phase === 'hibernating') {
      socket.wakeDeadline ??= Date.now() + this.deps.config.timing.wakeTimeoutMs;
      void this.wake(socket.actorId);
    }
  }

  /** The client closed: the row goes; the actor hears now if it holds the socket, else at its next start. */
  private async onClientClose(socket: ClientSocket, code: number, reason: string): Promise<void> {
    const phase = socket.phase;
    if (phase === 'closed') return this.forget(socket);
    socket.closeClient(code, reason);
    this.forget(socket);
    await this.unregister(socket);
    this.log.debug({ ...ids(socket), code, phase }, 'client closed');
    if (phase === 'active' || phase === 'opening') this.tellActorClosed(socket, closeCodeForActor(code), reason);
    // H7: a close during hibernation wakes the actor, whose start reports the disconnect (M\L).
    if (phase === 'hibernating') void this.wake(socket.actorId);
  }

  // --- Runner events ------------------------------------------------------------------------

  /**
   * A runner speaks only for its own connections: those attached to it, or (for a start's
   * restore report and the closes it sends while starting) the actor generation whose start this
   * gateway delivered to it. Anything else is dropped.
   */
  fromRunner(runner: TunnelRunner, message: FromRunner): void {
    const { runnerId } = runner;
    if (message.type === 'wsRestored') {
      if (runner.startedHere(message.actorId, message.generation)) return this.onRestored(runnerId, message);
      return this.refuse(runnerId, message);
    }
    const socket = this.sockets.get(message.requestId);
    if (!socket) {
      // The client went away before the actor accepted it: the actor must not keep it.
      if (message.type === 'wsOpenAck' && runner.startedHere(message.actorId, message.generation)) {
        const { requestId, actorId, generation } = message;
        this.deps.sendToRunner(runnerId, { type: 'wsClose', requestId, actorId, generation, code: 1001, reason: 'the client went away' });
      }
      return;
    }
    const attached = socket.runnerId === runnerId;
    switch (message.type) {
      case 'wsOpenAck':
        return attached ? void this.onAccepted(socket, runnerId, message.hibernatable) : this.refuse(runnerId, message);
      case 'wsAck':
        return attached ? socket.acknowledge(message.index) : this.refuse(runnerId, message);
      case 'wsMessage':
        return attached ? socket.deliver(message.data, message.binary) : this.refuse(runnerId, message);
      case 'wsClose': {
        const mayClose = socket.actorId === message.actorId && (attached || runner.startedHere(message.actorId, message.generation));
        return mayClose ? void this.closeByActor(socket, message.code, message.reason) : this.refuse(runnerId, message);
      }
    }
  }

  private refuse(runnerId: string, message: FromRunner): void {
    this.log.debug({ runnerId, type: message.type, ...('requestId' in message ? { requestId: message.requestId } : { actorId: message.actorId }) }, 'runner frame for a connection it does not hold; dropped');
  }

  /** A runner answered `not_hosted` to an open or a message: an open retries; messages stay pending. */
  notHosted(requestId: string): void {
    this.sockets.get(requestId)?.settleOpen('not_hosted');
  }

  /** A runner (re)connected: whatever its active sockets sent may have been lost with the old socket. */
  runnerConnected(runnerId: string): void {
    for (const socket of this.sockets.values()) if (socket.runnerId === runnerId) socket.resend();
  }

  /**
   * H1: a hibernatable connection is registered before anything can hibernate it. On an offer
   * the row is written again (idempotently): the start that missed it may have missed it
   * because it was gone.
   */
  private async onAccepted(socket: ClientSocket, runnerId: string, hibernatable: boolean): Promise<void> {
    if (socket.phase !== 'opening') return;
    socket.hibernatable = hibernatable;
    if (hibernatable) {
      try {
        await insertHibernatingRequest(this.deps.db, { gatewayId: this.deps.gatewayId, requestId: socket.requestId, actorId: socket.actorId });
        socket.registered = true;
      } catch (err) {
        socket.log.error({ err }, 'registering a hibernatable socket failed');
        return this.closeByGateway(socket, ClientCloseCode.ActorUnavailable, 'could not register the connection');
      }
    }
    if (socket.phase !== 'opening') return this.unregister(socket); // closed while registering
    if (!hibernatable && socket.registered) await this.unregister(socket); // an offer taken as ordinary
    socket.activate(runnerId, socket.generation, socket.lastAcked);
    socket.settleOpen('accepted');
    this.log.debug({ ...ids(socket), hibernatable, generation: socket.generation }, 'client socket accepted');
  }

  /**
   * A start of the actor reports what it restored (H5). Those sockets resume where the actor
   * left off; restored requests this gateway no longer holds are closed toward the actor; this
   * gateway's other sockets for the actor are offered to it (H8).
   */
  private onRestored(runnerId: string, message: Extract<RunnerToGateway, { type: 'wsRestored' }>): void {
    const restored = new Map(message.requests.map((r) => [r.requestId, r.lastIndex]));
    const sockets = [...(this.byActor.get(message.actorId) ?? [])];
    const held = new Set(sockets.map((s) => s.requestId));
    for (const requestId of restored.keys()) {
      if (held.has(requestId)) continue;
      this.deps.sendToRunner(runnerId, {
        type: 'wsClose',
        requestId,
        actorId: message.actorId,
        generation: message.generation,
        code: 1001,
        reason: 'the client went away while the actor was stopped',
      });
    }
    for (const socket of sockets) {
      if (!needsReattach(socket, message.generation)) continue;
      const lastIndex = restored.get(socket.requestId);
      if (lastIndex !== undefined) {
        socket.activate(runnerId, message.generation, lastIndex);
        this.log.debug({ ...ids(socket), generation: message.generation, lastIndex }, 'client socket restored');
      } else {
        void this.offer(socket, runnerId, message.generation);
      }
    }
    this.log.debug({ actorId: message.actorId, generation: message.generation, restored: restored.size }, 'actor restored connections');
  }

  /** H8: a hibernating socket the start did not restore is offered to the running actor. */
  private async offer(socket: ClientSocket, runnerId: string, generation: number): Promise<void> {
    const outcome = await this.requestOpenBounded(socket, runnerId, generation, true);
    if (outcome === 'not_hosted' && socket.phase === 'opening') socket.hibernate();
  }

  private async closeByActor(socket: ClientSocket, code: number, reason: string): Promise<void> {
    socket.closeClient(code, reason);
    this.forget(socket);
    await this.unregister(socket);
    this.log.debug({ ...ids(socket), code, reason }, 'closed by the actor');
  }

  // --- Actor state --------------------------------------------------------------------------

  /** The registry's state changes drive hibernation (H7) and, as a fallback, re-attachment. */
  onActorState(notice: ActorStateNotice): void {
    const sockets = this.byActor.get(notice.actorId);
    if (!sockets) return;
    this.lastSeen.set(notice.actorId, `${notice.state}/${notice.generation}`);
    for (const socket of [...sockets]) {
      if (notice.state === 'destroyed') {
        this.closeByGateway(socket, ClientCloseCode.ActorDestroyed, 'actor destroyed', false);
        continue;
      }
      if (socket.phase === 'active' && actorLeft(socket, notice)) this.onActorStopped(socket);
      if (notice.state === 'running' && notice.runnerId && socket.phase === 'hibernating' && socket.generation < notice.generation) {
        // The start's restore report did not reach this gateway: offer the socket instead.
        void this.offer(socket, notice.runnerId, notice.generation);
      }
    }
  }

  /** H7: a hibernatable socket hibernates; any other closes with a clear code. */
  private onActorStopped(socket: ClientSocket): void {
    if (!socket.hibernatable) return this.closeByGateway(socket, ClientCloseCode.ActorStopped, 'actor stopped', false);
    socket.hibernate();
    this.log.debug({ ...ids(socket), generation: socket.generation }, 'client socket hibernating');
    // H6: messages the actor had not acknowledged wake it at once.
    if (socket.hasPending) {
      socket.wakeDeadline ??= Date.now() + this.deps.config.timing.wakeTimeoutMs;
      void this.wake(socket.actorId);
    }
  }

  /**
   * Signals a wake once per sleep observed, however many messages arrive meanwhile: a burst
   * sends one signal, and the next sleep (a new state notice) allows the next. `force` is for
   * an open, whose wait decides for itself when to wake.
   */
  private async wake(actorId: string, force = false): Promise<void> {
    const seen = this.lastSeen.get(actorId) ?? 'unknown';
    if (!force && this.wokenFor.get(actorId) === seen) return;
    this.wokenFor.set(actorId, seen);
    this.deps.onWake(actorId);
    try {
      await signalActor(this.deps.client, actorId, wakeSignal);
    } catch (err) {
      this.log.warn({ err, actorId }, 'waking the actor failed');
    }
  }

  // --- Ending -------------------------------------------------------------------------------

  /** The gateway closes a socket (limits, timeouts, destroy, shutdown); the actor hears if it holds it. */
  private closeByGateway(socket: ClientSocket, code: ClientCloseCode, reason: string, tellActor = true): void {
    if (socket.phase === 'closed') return;
    const phase = socket.phase;
    socket.closeClient(code, reason);
    this.forget(socket);
    void this.unregister(socket);
    if (tellActor && phase === 'active') this.tellActorClosed(socket, code, reason);
    socket.log.info({ code, reason }, 'client socket closed by the gateway');
  }

  private tellActorClosed(socket: ClientSocket, code: number, reason: string): void {
    if (!socket.runnerId) return;
    this.deps.sendToRunner(socket.runnerId, {
      type: 'wsClose',
      requestId: socket.requestId,
      actorId: socket.actorId,
      generation: socket.generation,
      code,
      reason: reason.slice(0, 123),
    });
  }

  /** H4: the row goes with the socket. */
  private async unregister(socket: ClientSocket): Promise<void> {
    if (!socket.registered) return;
    socket.registered = false;
    try {
      await deleteHibernatingRequest(this.deps.db, this.deps.gatewayId, socket.requestId);
    } catch (err) {
      // The reaper's sweep removes it once this gateway is gone; until then it is a closed
      // request in the snapshot, which the runner closes toward this gateway (L\M) or this
      // gateway closes toward the actor (onRestored).
      socket.log.error({ err }, 'deleting the socket row failed');
    }
  }

  private forget(socket: ClientSocket): void {
    this.sockets.delete(socket.requestId);
    const set = this.byActor.get(socket.actorId);
    set?.delete(socket);
    if (set?.size === 0) {
      this.byActor.delete(socket.actorId);
      this.lastSeen.delete(socket.actorId);
      this.wokenFor.delete(socket.actorId);
    }
  }

  /** Acknowledgement and wake timeouts (DESIGN §5 limits). */
  private enforceDeadlines(): void {
    const now = Date.now();
    const { ackTimeoutMs } = this.deps.config.timing;
    for (const socket of [...this.sockets.values()]) {
      if (socket.phase === 'active' && socket.oldestUnackedMs(now) > ackTimeoutMs) {
        this.closeByGateway(socket, ClientCloseCode.AckTimeout, 'the actor did not acknowledge a message in time');
      } else if (socket.phase === 'hibernating' && socket.wakeDeadline !== null && now > socket.wakeDeadline) {
        this.closeByGateway(socket, ClientCloseCode.ActorUnavailable, 'the actor did not wake in time');
      }
    }
  }

  /** H2: this gateway's registration lapsed; its hibernatable sockets are no longer claimed. */
  abandonHibernatable(): void {
    for (const socket of [...this.sockets.values()]) {
      if (socket.hibernatable) this.closeByGateway(socket, ClientCloseCode.ServiceRestart, 'gateway lost its registration; reconnect');
    }
  }

  /** Gateway shutdown: every client is told to go away. */
  close(): void {
    clearInterval(this.ticker);
    for (const socket of [...this.sockets.values()]) this.closeByGateway(socket, ClientCloseCode.GoingAway, 'gateway shutting down');
    this.wss.close();
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

function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** A socket's ids for a log line, without making it a logger of its own. */
function ids(socket: ClientSocket): { actorId: string; requestId: string } {
  return { actorId: socket.actorId, requestId: socket.requestId };
}
