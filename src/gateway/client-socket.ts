/**
 * One client WebSocket held by the gateway for an actor. It numbers the client's messages
 * (indices rise by one for the connection's whole life, H6), keeps every one the actor has not
 * acknowledged, and moves between phases:
 *
 *   opening ──ack──▶ active ──actor stops──▶ hibernating ──restored or offered──▶ active …
 *      └──────────────────────────┴────────────────┴──▶ closed (by the client, the actor or the gateway)
 *
 * While hibernating nothing reaches the actor: messages wait (within the pending limits), and
 * the first one, or the client's close, wakes the actor.
 */
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'ws';
import type { Logger } from '../log.js';
import { closeReason } from '../protocol/close-reason.js';
import type { GatewayToRunner } from '../protocol/runner-protocol.js';

export type SocketPhase = 'opening' | 'active' | 'hibernating' | 'closed';

export interface SocketLimits {
  pendingFrames: number;
  pendingBytes: number;
}

/** What a socket needs from the hub that holds it. */
export interface SocketHost {
  gatewayId: string;
  /** Sends a frame to a runner if it is connected here; false otherwise (the frame stays pending). */
  sendToRunner(runnerId: string, frame: GatewayToRunner): boolean;
  log: Logger;
}

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
  phase: SocketPhase = 'opening';
  hibernatable = false;
  /** The runner and actor generation it is attached to (or being opened on). */
  runnerId: string | null = null;
  generation = 0;
  /** The highest index the actor has acknowledged (durable at the actor). */
  lastAcked = 0;
  /** Set when a hibernating socket asked for a wake: past it, the client is told the actor is unavailable. */
  wakeDeadline: number | null = null;
  /** The registry row exists (H1); every way the socket ends deletes it (H4). */
  registered = false;
  private nextIndex = 1;
  private pending: PendingMessage[] = [];
  private pendingBytes = 0;
  private openWaiter: ((outcome: OpenOutcome) => void) | null = null;
  private childLog: Logger | null = null;

  constructor(
    readonly actorId: string,
    readonly path: string,
    readonly headers: Record<string, string>,
    readonly ws: WebSocket,
    private readonly host: SocketHost,
    private readonly limits: SocketLimits,
  ) {}

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
    if (this.phase === 'active') this.sendPending(message);
    return true;
  }

  get hasPending(): boolean {
    return this.pending.length > 0;
  }

  get pendingSummary(): { frames: number; bytes: number } {
    return { frames: this.pending.length, bytes: this.pendingBytes };
  }

  /** Milliseconds the oldest message sent to the actor has waited for its acknowledgement. */
  oldestUnackedMs(now: number): number {
    const sentAt = this.pending[0]?.sentAt;
    return sentAt === null || sentAt === undefined ? 0 : now - sentAt;
  }

  /** Asks the actor's generation on `runnerId` to accept this connection; resolves with the outcome. */
  requestOpen(runnerId: string, generation: number, offer: boolean): Promise<OpenOutcome> {
    this.runnerId = runnerId;
    this.generation = generation;
    this.phase = 'opening';
    return new Promise((resolve) => {
      this.openWaiter = resolve;
      const sent = this.host.sendToRunner(runnerId, {
        type: 'wsOpen',
        requestId: this.requestId,
        actorId: this.actorId,
        generation,
        gatewayId: this.host.gatewayId,
        path: this.path,
        headers: this.headers,
        lastIndex: this.lastAcked,
        offer,
      });
      if (!sent) this.settleOpen('not_hosted');
    });
  }

  settleOpen(outcome: OpenOutcome): void {
    const waiter = this.openWaiter;
    this.openWaiter = null;
    waiter?.(outcome);
  }

  /** The actor holds the connection at `generation`, having processed up to `lastIndex`: resend the rest. */
  activate(runnerId: string, generation: number, lastIndex: number): void {
    this.runnerId = runnerId;
    this.generation = generation;
    this.phase = 'active';
    this.wakeDeadline = null;
    this.acknowledge(lastIndex);
    for (const message of this.pending) this.sendPending(message);
  }

  /** The actor stopped: hold the connection, resend later. */
  hibernate(): void {
    this.phase = 'hibernating';
    this.runnerId = null;
    for (const message of this.pending) message.sentAt = null;
  }

  /** The runner came back (same generation): what it may have missed goes again; it drops duplicates. */
  resend(): void {
    if (this.phase !== 'active') return;
    for (const message of this.pending) this.sendPending(message);
  }

  acknowledge(index: number): void {
    if (index <= this.lastAcked) return;
    this.lastAcked = index;
    while (this.pending[0] && this.pending[0].index <= index) this.pendingBytes -= this.pending.shift()!.bytes;
  }

  /** Sends a message from the actor to the client. */
  deliver(data: string, binary: boolean): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(binary ? Buffer.from(data, 'base64') : data, { binary });
  }

  /** Closes the client side (idempotent); the caller deals with the actor and the registry. */
  closeClient(code: number, reason: string): void {
    this.phase = 'closed';
    this.settleOpen('closed');
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(code, closeReason(reason));
  }

  private sendPending(message: PendingMessage): void {
    if (!this.runnerId) return;
    const sent = this.host.sendToRunner(this.runnerId, {
      type: 'wsMessage',
      requestId: this.requestId,
      actorId: this.actorId,
      generation: this.generation,
      index: message.index,
      data: message.data,
      binary: message.binary,
    });
    message.sentAt = sent ? Date.now() : null;
  }
}
