/**
 * One client WebSocket held by the gateway for an actor. It numbers the client's messages
 * (indices rise by one for the connection's whole life, H6), keeps every one the actor has not
 * acknowledged, and moves between phases, only through its own transition methods:
 *
 *   opening ──activate──▶ active ──hibernate──▶ hibernating ──requestOpen (offer)──▶ opening …
 *      │                    ▲                       │
 *      │                    └───activate (restored)─┘
 *      └──────────────────────────┴─────────────────┴──closeClient──▶ closed (for good)
 *
 * While hibernating nothing reaches the actor: messages wait (within the pending limits), and
 * the first one, or the client's close, wakes the actor.
 *
 * The other way (H9), the actor's frames carry a per-connection seq: the socket delivers each
 * once and in order, keeps the highest delivered, and acknowledges it to the runner that sent it.
 * A socket that hibernates because its generation is stopping still takes that generation's
 * frames (what onStop and onDisconnect send), until the registry says the generation stopped.
 *
 * A resumable session (H10, `dormouse.v1`) wraps both ways in numbered frames. Its client
 * acknowledges the actor's frames, and only what the client acknowledged is acknowledged to the
 * actor, whose outbox keeps the rest: when the client's socket is lost, the session stays (the
 * client is "away") until it resumes here or on another gateway, or the retention passes.
 */
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'ws';
import type { Logger } from '../log.js';
import { closeReason } from '../protocol/close-reason.js';
import type { GatewayTunnelFrame, GatewayTunnelMessage } from '../protocol/runner-protocol.js';
import type { GatewaySessionFrame } from '../protocol/session-protocol.js';

export type SocketPhase = 'opening' | 'active' | 'hibernating' | 'closed';

export interface SocketLimits {
  pendingFrames: number;
  pendingBytes: number;
}

/** What a socket needs from the tunnel that holds it. */
export interface SocketHost {
  gatewayId: string;
  /** Sends a frame to a runner if it is connected here; false otherwise (the frame stays pending). */
  sendToRunner: (runnerId: string, frame: GatewayTunnelFrame) => boolean;
  log: Logger;
}

/** The part of a `ws` WebSocket a client socket uses. */
export type ClientWs = Pick<
  WebSocket,
  'readyState' | 'OPEN' | 'CONNECTING' | 'send' | 'close' | 'pause' | 'resume' | 'bufferedAmount'
>;

interface PendingMessage {
  index: number;
  data: string;
  binary: boolean;
  bytes: number;
  /** When it was last sent to the actor; null while it waits. */
  sentAt: number | null;
}

export type OpenOutcome = 'accepted' | 'not_hosted' | 'refused' | 'closed';

/**
 * What became of an actor frame: handed to the client, already delivered, past a missing one,
 * or kept by the actor's outbox while a session's client is away.
 */
export type DeliveryOutcome = 'delivered' | 'duplicate' | 'gap' | 'away';

/** How a resumable session (H10) starts: a new one, or one resumed where its client left off. */
export interface SessionStart {
  /** The connection's id at the actor; a resumed session continues it. */
  requestId: string;
  token: string;
  /** Resumed: the last actor frame and the last own message acknowledged that the client has. */
  resumed?: { seq: number; index: number };
}

interface Session {
  token: string;
  /** Whether the client has been told the token (once the actor first accepted the socket). */
  announced: boolean;
  /** The highest actor frame the client acknowledged: what the actor's outbox may drop. */
  clientAckedSeq: number;
  /** When the client's socket was lost; null while it is there. */
  awaySince: number | null;
  /** Actor frames that came before the client was told its session (sent right after). */
  early: { seq: number; data: string; binary: boolean }[];
}

/** A runner and actor generation. */
interface Placement {
  runnerId: string;
  generation: number;
}

export class ClientSocket {
  readonly requestId: string;
  private current: SocketPhase = 'opening';
  private isHibernatable = false;
  /** The runner and actor generation it is attached to (or being opened on). */
  private attachedTo: string | null = null;
  private attachedGeneration = 0;
  /** The highest index the actor has acknowledged (durable at the actor). */
  private acked = 0;
  /** Set when a hibernating socket asked for a wake: past it, the client is told the actor is unavailable. */
  private wakeDeadline: number | null = null;
  private nextIndex = 1;
  private pending: PendingMessage[] = [];
  private pendingBytes = 0;
  private openWaiter: ((outcome: OpenOutcome) => void) | null = null;
  /** The highest actor→client seq handed to the client's socket (H9). */
  private deliveredSeq = 0;
  /** Where the next acknowledgement of `deliveredSeq` goes; set while one is scheduled. */
  private outAckTo: Placement | null = null;
  /** The stopping generation whose frames a hibernating socket still takes (output only). */
  private outputFrom: Placement | null = null;
  private childLog: Logger | null = null;
  /** When `resync` last asked the runner to resend. */
  private resyncedAt = 0;
  /** Whether the open in progress is an offer (H8). */
  private openingAsOffer = false;
  private readonly session: Session | null;
  /** A session resumed on this socket: it continues a connection the actor already holds. */
  readonly isResumed: boolean;

  constructor(
    readonly actorId: string,
    readonly path: string,
    readonly headers: Record<string, string>,
    private readonly ws: ClientWs,
    private readonly host: SocketHost,
    private readonly limits: SocketLimits,
    session?: SessionStart,
  ) {
    const resumed = session?.resumed;
    this.requestId = session?.requestId ?? randomUUID();
    this.isResumed = resumed !== undefined;
    this.session = session
      ? { token: session.token, announced: false, clientAckedSeq: resumed?.seq ?? 0, awaySince: null, early: [] }
      : null;
    if (resumed) {
      this.deliveredSeq = resumed.seq;
      this.acked = resumed.index;
      this.nextIndex = resumed.index + 1;
    }
  }

  /** The session's token (H10); null for any other socket. */
  get sessionToken(): string | null {
    return this.session?.token ?? null;
  }

  /** A session whose client has its token: it may resume (H10). */
  get resumable(): boolean {
    return this.session?.announced === true;
  }

  /** Whether the client speaks `dormouse.v1` (H10). */
  get isSession(): boolean {
    return this.session !== null;
  }

  /** The index the client's next message must carry (sessions number their own). */
  get nextClientIndex(): number {
    return this.nextIndex;
  }

  /** When a session's client went away; null while it is there (and for any other socket). */
  get awaySince(): number | null {
    return this.session?.awaySince ?? null;
  }

  /** The session's client socket was lost: the session waits for it to resume. */
  clientAway(now: number): void {
    if (this.session) this.session.awaySince ??= now;
  }

  /** Once the actor first holds the socket, the client gets its token and where both ways stand. */
  announceSession(): void {
    const session = this.session;
    if (!session || session.announced) return;
    session.announced = true;
    this.sendToClient({ t: 'session', session: session.token, index: this.acked, seq: this.deliveredSeq });
    for (const frame of session.early.splice(0)) {
      this.sendToClient({ t: 'msg', ...frame });
      this.deliveredSeq = frame.seq;
    }
  }

  /** A session's client acknowledges actor frames up to `seq`; false if it never got that far. */
  clientAcknowledged(seq: number): boolean {
    if (!this.session || seq > this.deliveredSeq) return false;
    if (seq <= this.session.clientAckedSeq) return true;
    this.session.clientAckedSeq = seq;
    const to = this.attachedTo ? { runnerId: this.attachedTo, generation: this.attachedGeneration } : this.outputFrom;
    if (to) this.ackOutput(to.runnerId, to.generation);
    return true;
  }

  get phase(): SocketPhase {
    return this.current;
  }

  /** The actor accepted it as hibernatable: it survives the actor stopping (H7). */
  get hibernatable(): boolean {
    return this.isHibernatable;
  }

  get runnerId(): string | null {
    return this.attachedTo;
  }

  get generation(): number {
    return this.attachedGeneration;
  }

  get lastAcked(): number {
    return this.acked;
  }

  /** Whether `runnerId` at `generation` may still send this socket frames after it hibernated. */
  takesOutputFrom(runnerId: string, generation: number): boolean {
    return this.outputFrom?.runnerId === runnerId && this.outputFrom.generation === generation;
  }

  /** The registry's state of the actor: once the output-only generation has stopped, nothing more comes from it. */
  noteActorState(state: string, generation: number): void {
    const from = this.outputFrom;
    if (!from) return;
    const stillStopping =
      generation === from.generation && (state === 'stopping' || state === 'running' || state === 'starting');
    if (generation > from.generation || !stillStopping) this.outputFrom = null;
  }

  /** Made on first use: a thousand idle sockets should not carry a thousand loggers. */
  get log(): Logger {
    this.childLog ??= this.host.log.child({ actorId: this.actorId, requestId: this.requestId });
    return this.childLog;
  }

  /** Numbers and keeps a client message; false if that breaks the pending limits. */
  takeClientMessage(data: Buffer, binary: boolean): boolean {
    const message: PendingMessage = {
      index: this.nextIndex++,
      data: binary ? data.toString('base64') : data.toString('utf8'),
      binary,
      bytes: data.length,
      sentAt: null,
    };
    this.pending.push(message);
    this.pendingBytes += message.bytes;
    if (this.pending.length > this.limits.pendingFrames || this.pendingBytes > this.limits.pendingBytes) return false;
    if (this.current === 'active') this.sendPending(message);
    return true;
  }

  get hasPending(): boolean {
    return this.pending.length > 0;
  }

  get pendingSummary(): { frames: number; bytes: number } {
    return { frames: this.pending.length, bytes: this.pendingBytes };
  }

  /** Whether the oldest message sent to the actor has waited longer than `timeoutMs` for its acknowledgement. */
  ackOverdue(now: number, timeoutMs: number): boolean {
    const sentAt = this.pending[0]?.sentAt;
    return this.current === 'active' && sentAt !== null && sentAt !== undefined && now - sentAt > timeoutMs;
  }

  /** A hibernating socket needs its actor: past `timeoutMs` from the first such need, it gives up. */
  startWakeClock(now: number, timeoutMs: number): void {
    this.wakeDeadline ??= now + timeoutMs;
  }

  /** Whether the actor failed to wake within the wake clock. */
  wakeOverdue(now: number): boolean {
    return this.current === 'hibernating' && this.wakeDeadline !== null && now > this.wakeDeadline;
  }

  /**
   * opening: asks the actor's generation on `runnerId` to accept this connection (`offer`: a
   * hibernating one its start did not restore, H8); resolves with the outcome.
   */
  requestOpen(runnerId: string, generation: number, offer: boolean): Promise<OpenOutcome> {
    if (this.current === 'closed') return Promise.resolve('closed');
    this.attach(runnerId, generation);
    this.current = 'opening';
    this.rewindToClientAck();
    this.openingAsOffer = offer;
    return new Promise((resolve) => {
      this.openWaiter = resolve;
      // Not sent (its runner is connected nowhere right now): sent again when it connects.
      this.sendToActor(this.openMessage(offer));
    });
  }

  /** The runner came back while this socket was opening on it: the open goes again (the runner takes it once). */
  resendOpen(): void {
    if (this.current === 'opening' && this.openWaiter) this.sendToActor(this.openMessage(this.openingAsOffer));
  }

  /** Ends the open attempt in progress, if any. */
  settleOpen(outcome: OpenOutcome): void {
    const waiter = this.openWaiter;
    this.openWaiter = null;
    waiter?.(outcome);
  }

  /** The actor is accepting it (its row goes in next, H1): whether it may hibernate. */
  acceptedAs(hibernatable: boolean): void {
    if (this.current === 'opening') this.isHibernatable = hibernatable;
  }

  /** active: the actor holds the connection at `generation`, having processed up to `lastIndex`; the rest goes again. */
  activate(runnerId: string, generation: number, lastIndex: number): void {
    if (this.current === 'closed') return;
    this.attach(runnerId, generation);
    this.current = 'active';
    this.wakeDeadline = null;
    this.acknowledge(lastIndex);
    for (const message of this.pending) this.sendPending(message);
    // H9: the host learns what was delivered, so its outbox keeps only what is missing.
    if (this.outAckSeq > 0) this.ackOutput(runnerId, generation);
  }

  /** hibernating: the actor stopped; hold the connection, resend later. */
  hibernate(): void {
    if (this.current === 'closed') return;
    // An active socket's generation is stopping: what its onStop and onDisconnect send must arrive.
    this.outputFrom =
      this.current === 'active' && this.attachedTo
        ? { runnerId: this.attachedTo, generation: this.attachedGeneration }
        : null;
    this.current = 'hibernating';
    this.attachedTo = null;
    for (const message of this.pending) message.sentAt = null;
  }

  /**
   * Frames between this gateway and the runner, on another gateway, may have been lost on the
   * bus: the runner is asked to resend what it has not had acknowledged (an open of a connection
   * it holds does that, H8) and the pending messages go again. At most once per `minIntervalMs`.
   */
  resync(now: number, minIntervalMs: number): void {
    if (this.current !== 'active' || now - this.resyncedAt < minIntervalMs) return;
    this.resyncedAt = now;
    this.rewindToClientAck();
    this.sendToActor(this.openMessage(true));
    this.resend();
  }

  /** Opens this connection on the actor, or offers it (a connection the actor knows just resumes). */
  private openMessage(offer: boolean): GatewayTunnelMessage {
    const { path, headers, acked: lastIndex, deliveredSeq: lastOutSeq } = this;
    return { kind: 'wsOpen', gatewayId: this.host.gatewayId, path, headers, lastIndex, lastOutSeq, offer };
  }

  /** The runner came back (same generation): what it may have missed goes again; it drops duplicates. */
  resend(): void {
    if (this.current !== 'active') return;
    for (const message of this.pending) this.sendPending(message);
  }

  acknowledge(index: number): void {
    if (index <= this.acked) return;
    this.acked = index;
    while (this.pending[0] && this.pending[0].index <= index) this.pendingBytes -= this.pending.shift()!.bytes;
    if (this.session?.announced) this.sendToClient({ t: 'ack', index });
  }

  /** Output sent to the client that it has not read yet. */
  get bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  /** Back-pressure: stop (or resume) reading the client's messages. */
  pauseReading(paused: boolean): void {
    if (paused) this.ws.pause();
    else this.ws.resume();
  }

  /**
   * An actor frame from `runnerId` at `generation` (H9): the next seq goes to the client, one
   * already delivered is dropped; either way the runner hears the highest seq delivered. A seq
   * past the next one is not delivered (the host resends in order from its outbox).
   */
  deliver(runnerId: string, generation: number, seq: number, data: string, binary: boolean): DeliveryOutcome {
    const session = this.session;
    const next = this.deliveredSeq + 1 + (session?.early.length ?? 0);
    if (seq > next) return 'gap';
    if (session && this.ws.readyState !== this.ws.OPEN) return 'away';
    const outcome = seq === next ? 'delivered' : 'duplicate';
    if (outcome === 'delivered') {
      if (!session) {
        if (this.ws.readyState === this.ws.OPEN) this.ws.send(binary ? Buffer.from(data, 'base64') : data, { binary });
        this.deliveredSeq = seq;
      } else if (!session.announced) {
        session.early.push({ seq, data, binary }); // the client hears its session first
      } else {
        this.sendToClient({ t: 'msg', seq, data, binary });
        this.deliveredSeq = seq;
      }
    }
    // A session's client acknowledges for itself; a plain socket's frame is done once handed over.
    if (!this.session || outcome === 'duplicate') this.ackOutput(runnerId, generation);
    return outcome;
  }

  /**
   * A session counts as delivered only what its client acknowledged when it asks the runner to
   * resend (the client drops what it already has): the runner's outbox drops what the open says
   * was delivered, and a connection the actor lost numbers its next frame after it.
   */
  private rewindToClientAck(): void {
    if (!this.session) return;
    this.deliveredSeq = this.session.clientAckedSeq;
    this.session.early.length = 0;
  }

  private sendToClient(frame: GatewaySessionFrame): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(frame));
  }

  /** What the actor's outbox may drop: what was handed over, or for a session what its client has. */
  private get outAckSeq(): number {
    return this.session ? this.session.clientAckedSeq : this.deliveredSeq;
  }

  /** Acknowledges the highest delivered seq, once per turn of the event loop however many frames came. */
  private ackOutput(runnerId: string, generation: number): void {
    const scheduled = this.outAckTo !== null;
    this.outAckTo = { runnerId, generation };
    if (scheduled) return;
    setImmediate(() => {
      const to = this.outAckTo;
      this.outAckTo = null;
      const seq = this.outAckSeq;
      if (!to || seq === 0) return;
      const { requestId, actorId } = this;
      this.host.sendToRunner(to.runnerId, {
        type: 'tunnel',
        requestId,
        actorId,
        generation: to.generation,
        message: { kind: 'wsOutAck', seq },
      });
    });
  }

  /** closed: closes the client side (idempotent); the caller deals with the actor and the registry. */
  closeClient(code: number, reason: string): void {
    this.current = 'closed';
    this.outputFrom = null;
    this.settleOpen('closed');
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING)
      this.ws.close(code, closeReason(reason));
  }

  /** Tells the actor the connection ended, if a runner holds it (the client closed, or the gateway did). */
  tellActorClosed(code: number, reason: string): void {
    this.sendToActor({ kind: 'wsClose', code, reason: closeReason(reason) });
  }

  private attach(runnerId: string, generation: number): void {
    this.outputFrom = null;
    this.attachedTo = runnerId;
    this.attachedGeneration = generation;
  }

  private sendPending(message: PendingMessage): void {
    const sent = this.sendToActor({
      kind: 'wsMessage',
      index: message.index,
      data: message.data,
      binary: message.binary,
    });
    message.sentAt = sent ? Date.now() : null;
  }

  private sendToActor(message: GatewayTunnelMessage): boolean {
    if (!this.attachedTo) return false;
    const { requestId, actorId } = this;
    return this.host.sendToRunner(this.attachedTo, {
      type: 'tunnel',
      requestId,
      actorId,
      generation: this.attachedGeneration,
      message,
    });
  }
}
