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
 */
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'ws';
import type { Logger } from '../log.js';
import { closeReason } from '../protocol/close-reason.js';
import type { GatewayToRunner, GatewayTunnelMessage } from '../protocol/runner-protocol.js';

export type SocketPhase = 'opening' | 'active' | 'hibernating' | 'closed';

export interface SocketLimits {
  pendingFrames: number;
  pendingBytes: number;
}

/** What a socket needs from the tunnel that holds it. */
export interface SocketHost {
  gatewayId: string;
  /** Sends a frame to a runner if it is connected here; false otherwise (the frame stays pending). */
  sendToRunner: (runnerId: string, frame: GatewayToRunner) => boolean;
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

/** What became of an actor frame: handed to the client, already delivered, or past a missing one. */
export type DeliveryOutcome = 'delivered' | 'duplicate' | 'gap';

/** A runner and actor generation. */
interface Placement {
  runnerId: string;
  generation: number;
}

export class ClientSocket {
  readonly requestId: string = randomUUID();
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

  constructor(
    readonly actorId: string,
    readonly path: string,
    readonly headers: Record<string, string>,
    private readonly ws: ClientWs,
    private readonly host: SocketHost,
    private readonly limits: SocketLimits,
  ) {}

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
    return new Promise((resolve) => {
      this.openWaiter = resolve;
      const sent = this.sendToActor({
        kind: 'wsOpen',
        gatewayId: this.host.gatewayId,
        path: this.path,
        headers: this.headers,
        lastIndex: this.acked,
        lastOutSeq: this.deliveredSeq,
        offer,
      });
      if (!sent) this.settleOpen('not_hosted');
    });
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
    if (this.deliveredSeq > 0) this.ackOutput(runnerId, generation);
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

  /** The runner came back (same generation): what it may have missed goes again; it drops duplicates. */
  resend(): void {
    if (this.current !== 'active') return;
    for (const message of this.pending) this.sendPending(message);
  }

  acknowledge(index: number): void {
    if (index <= this.acked) return;
    this.acked = index;
    while (this.pending[0] && this.pending[0].index <= index) this.pendingBytes -= this.pending.shift()!.bytes;
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
    if (seq > this.deliveredSeq + 1) return 'gap';
    const outcome = seq === this.deliveredSeq + 1 ? 'delivered' : 'duplicate';
    if (outcome === 'delivered') {
      if (this.ws.readyState === this.ws.OPEN) this.ws.send(binary ? Buffer.from(data, 'base64') : data, { binary });
      this.deliveredSeq = seq;
    }
    this.ackOutput(runnerId, generation);
    return outcome;
  }

  /** Acknowledges the highest delivered seq, once per turn of the event loop however many frames came. */
  private ackOutput(runnerId: string, generation: number): void {
    const scheduled = this.outAckTo !== null;
    this.outAckTo = { runnerId, generation };
    if (scheduled) return;
    setImmediate(() => {
      const to = this.outAckTo;
      this.outAckTo = null;
      if (!to || this.deliveredSeq === 0) return;
      const { requestId, actorId } = this;
      this.host.sendToRunner(to.runnerId, {
        type: 'tunnel',
        requestId,
        actorId,
        generation: to.generation,
        message: { kind: 'wsOutAck', seq: this.deliveredSeq },
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
