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
export type ClientWs = Pick<WebSocket, 'readyState' | 'OPEN' | 'CONNECTING' | 'send' | 'close'>;

interface PendingMessage {
  index: number;
  data: string;
  binary: boolean;
  bytes: number;
  /** When it was last sent to the actor; null while it waits. */
  sentAt: number | null;
}

export type OpenOutcome = 'accepted' | 'not_hosted' | 'refused' | 'closed';

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
  }

  /** hibernating: the actor stopped; hold the connection, resend later. */
  hibernate(): void {
    if (this.current === 'closed') return;
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

  /** Sends a message from the actor to the client. */
  deliver(data: string, binary: boolean): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(binary ? Buffer.from(data, 'base64') : data, { binary });
  }

  /** closed: closes the client side (idempotent); the caller deals with the actor and the registry. */
  closeClient(code: number, reason: string): void {
    this.current = 'closed';
    this.settleOpen('closed');
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING)
      this.ws.close(code, closeReason(reason));
  }

  /** Tells the actor the connection ended, if a runner holds it (the client closed, or the gateway did). */
  tellActorClosed(code: number, reason: string): void {
    this.sendToActor({ kind: 'wsClose', code, reason: closeReason(reason) });
  }

  private attach(runnerId: string, generation: number): void {
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
