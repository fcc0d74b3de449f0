/**
 * The other gateways, as the tunnel sees them over the bus (DESIGN §2.1): where each runner is
 * connected (learned from the gateways' announcements, or read from the registry when unknown),
 * and, for the runners connected here, which gateway holds each of their requests (learned from
 * the frames that gateway sends them, and from a start's snapshot). Frames of a request whose
 * holder is unknown go to every gateway; only its holder takes them.
 */
import { gatewayOfRunner } from '../db/runners.js';
import type { Queryable } from '../db/pool.js';
import { ActorTimeout, NotHosted, RunnerUnreachable } from '../errors.js';
import type { Logger } from '../log.js';
import type { BusMessage } from '../protocol/gateway-bus.js';
import type { GatewayTunnelFrame, RunnerTunnelFrame, WsRestored } from '../protocol/runner-protocol.js';
import type { TunnelledRequest, TunnelledResponse } from './http-exchanges.js';
import type { NatsBus } from './nats-bus.js';
import type { SpeakingRunner } from './speaks-for.js';

/** Bound on remembered request holders; the oldest go first (their frames then go to all gateways). */
const MAX_HOLDERS = 200_000;

export class RemoteGateways {
  /** Runner id → the gateway it is connected to. */
  private readonly runnerGateways = new Map<string, string>();
  private readonly lookups = new Map<string, Promise<string | null>>();
  /** Frames for runners whose gateway is being looked up. */
  private readonly waiting = new Map<string, GatewayTunnelFrame[]>();
  /** Request id → the gateway holding it, for requests on runners connected here. */
  private readonly holders = new Map<string, string>();

  constructor(
    private readonly bus: NatsBus,
    private readonly db: Queryable,
    private readonly gatewayId: string,
    private readonly log: Logger,
  ) {}

  // --- Where runners are ----------------------------------------------------------------------

  /** A gateway announced a runner (or this one accepted it). */
  runnerAt(runnerId: string, gatewayId: string): void {
    this.runnerGateways.set(runnerId, gatewayId);
  }

  /** A gateway announced that a runner left it; a newer connection elsewhere stays. */
  runnerLeft(runnerId: string, gatewayId: string): void {
    if (this.runnerGateways.get(runnerId) === gatewayId) this.runnerGateways.delete(runnerId);
  }

  /** Announcements may have been missed: read the registry again when next needed. */
  forgetRunners(): void {
    this.runnerGateways.clear();
  }

  /** The gateway of a runner, reading the registry if no announcement told it. */
  async gatewayOf(runnerId: string): Promise<string | null> {
    const known = this.runnerGateways.get(runnerId);
    if (known) return known;
    let lookup = this.lookups.get(runnerId);
    if (!lookup) {
      lookup = gatewayOfRunner(this.db, runnerId).finally(() => this.lookups.delete(runnerId));
      this.lookups.set(runnerId, lookup);
    }
    const gatewayId = await lookup;
    if (gatewayId && !this.runnerGateways.has(runnerId)) this.runnerGateways.set(runnerId, gatewayId);
    return gatewayId;
  }

  /**
   * Sends a frame to a runner connected to another gateway. While the registry is read for where
   * it is, its frames wait, in order; if it is connected nowhere they are dropped (the sockets
   * resend theirs when a gateway announces the runner).
   */
  sendToRunner(runnerId: string, frame: GatewayTunnelFrame): void {
    const waiting = this.waiting.get(runnerId);
    if (waiting) return void waiting.push(frame);
    const gatewayId = this.runnerGateways.get(runnerId);
    if (gatewayId && gatewayId !== this.gatewayId) return this.send(gatewayId, runnerId, frame);
    this.waiting.set(runnerId, [frame]);
    void this.gatewayOf(runnerId)
      .catch((err: unknown) => {
        this.log.error({ err, runnerId }, 'looking up the gateway of a runner failed');
        return null;
      })
      .then((found) => {
        const frames = this.waiting.get(runnerId) ?? [];
        this.waiting.delete(runnerId);
        if (!found || found === this.gatewayId)
          return this.log.debug({ runnerId, frames: frames.length }, 'frames for a runner connected nowhere; dropped');
        for (const f of frames) this.send(found, runnerId, f);
      });
  }

  private send(gatewayId: string, runnerId: string, frame: GatewayTunnelFrame): void {
    this.bus.send(gatewayId, { type: 'toRunner', from: this.gatewayId, runnerId, frame });
  }

  /** An HTTP request to an actor generation on a runner connected to another gateway. */
  async request(
    actor: { actorId: string; generation: number; runnerId: string },
    request: TunnelledRequest,
    timeoutMs: number,
  ): Promise<TunnelledResponse> {
    const gatewayId = await this.gatewayOf(actor.runnerId);
    if (!gatewayId || gatewayId === this.gatewayId)
      throw new RunnerUnreachable(`runner ${actor.runnerId} is not connected to any gateway`);
    const reply = await this.bus.request(
      gatewayId,
      {
        runnerId: actor.runnerId,
        actorId: actor.actorId,
        generation: actor.generation,
        request: {
          kind: 'httpRequest',
          method: request.method,
          path: request.path,
          headers: request.headers,
          body: request.body ? request.body.toString('base64') : null,
        },
      },
      // The runner's gateway answers "timeout" itself first.
      timeoutMs + 1000,
    );
    if (reply.ok) {
      const { status, headers, body } = reply.response;
      return { status, headers, body: body === null ? null : Buffer.from(body, 'base64') };
    }
    if (reply.error === 'notHosted') throw new NotHosted(reply.message);
    if (reply.error === 'timeout') throw new ActorTimeout(reply.message);
    if (reply.error === 'unreachable') this.runnerGateways.delete(actor.runnerId);
    throw new RunnerUnreachable(reply.message);
  }

  // --- Who holds the requests of runners connected here ---------------------------------------

  /** `gatewayId` holds the request (it sent a frame for it, or a snapshot says so). */
  holds(requestId: string, gatewayId: string): void {
    this.holders.delete(requestId); // re-inserted last: the oldest go first
    this.holders.set(requestId, gatewayId);
    if (this.holders.size > MAX_HOLDERS) this.holders.delete(this.holders.keys().next().value!);
  }

  /** The request ended (a close went either way). */
  released(requestId: string): void {
    this.holders.delete(requestId);
  }

  /**
   * Sends a frame of a runner connected here to the gateway holding its request, or to all if
   * that is not known. False if this gateway holds it (the tunnel takes it itself).
   */
  forwardFromRunner(runner: SpeakingRunner, frame: RunnerTunnelFrame): boolean {
    const holder = this.holders.get(frame.requestId);
    if (holder === this.gatewayId) return false;
    const message: BusMessage = {
      type: 'fromRunner',
      runnerId: runner.runnerId,
      startedHere: runner.startedHere(frame.actorId, frame.generation),
      frame,
    };
    if (holder) this.bus.send(holder, message);
    else this.bus.broadcast(message);
    return true;
  }

  /** A start on a runner connected here restored connections: every gateway may hold some. */
  restored(runnerId: string, report: WsRestored, snapshotHolders: Map<string, string>): void {
    const holders: Record<string, string> = {};
    for (const { requestId } of report.requests) {
      const holder = snapshotHolders.get(requestId);
      if (!holder) continue;
      holders[requestId] = holder;
      this.holds(requestId, holder);
    }
    this.bus.broadcast({ type: 'restored', runnerId, report, holders });
  }

  // --- Announcements --------------------------------------------------------------------------

  runnerConnected(runnerId: string): void {
    this.runnerAt(runnerId, this.gatewayId);
    this.bus.broadcast({ type: 'runnerConnected', runnerId, gatewayId: this.gatewayId });
  }

  runnerDisconnected(runnerId: string): void {
    this.runnerLeft(runnerId, this.gatewayId);
    this.bus.broadcast({ type: 'runnerDisconnected', runnerId, gatewayId: this.gatewayId });
  }

  /** This gateway is back on the bus after an outage. */
  rejoined(): void {
    this.bus.broadcast({ type: 'rejoined', gatewayId: this.gatewayId });
  }

  /** A session was resumed here (H10): the gateway that held it lets its old socket go. */
  sessionTaken(requestId: string): void {
    this.bus.broadcast({ type: 'sessionTaken', requestId, gatewayId: this.gatewayId });
  }

  reportedRunning(runnerId: string, actorId: string, generation: number): void {
    this.bus.broadcast({ type: 'reportedRunning', runnerId, actorId, generation });
  }
}
