/**
 * One connected runner, seen from the gateway: delivers its queued commands, forwards its
 * events to the actor workflows (acknowledging each only once the workflow holds it), serves
 * its KV operations under the generation fence, and hands its tunnel frames to the tunnel.
 */
import type { Client } from '@temporalio/client';
import type { WebSocket } from 'ws';
import type { Config } from '../config.js';
import { ackCommands, pendingCommands } from '../db/commands.js';
import { runKvOp } from '../db/kv.js';
import { Fenced } from '../errors.js';
import type { Db } from '../db/pool.js';
import { disconnectRunner, drainRunner, hosts } from '../db/runners.js';
import type { Logger } from '../log.js';
import {
  RunnerCloseCode,
  parseRunnerFrame,
  type EventEnvelope,
  type GatewayToRunner,
  type RunnerToGateway,
  type RunnerTunnelFrame,
} from '../protocol/runner-protocol.js';
import { signalActor } from '../temporal-client.js';
import { retryWithBackoff } from '../util/backoff.js';
import { KeyedQueue } from '../util/keyed-queue.js';
import { wsText } from '../util/ws-data.js';
import { eventsSignal } from '../workflows/actor-api.js';
import { closeReason } from '../protocol/close-reason.js';
import type { SpeakingRunner } from './speaks-for.js';

/** Where a runner's tunnel traffic goes, and who hears that it came and went (the tunnel). */
export interface TunnelSink {
  fromRunner(runner: RunnerConnection, frame: RunnerTunnelFrame): void;
  /** A start's restore report (H5): per actor, not per request. */
  restored(runner: RunnerConnection, report: Extract<RunnerToGateway, { type: 'wsRestored' }>): void;
  runnerConnected(runnerId: string): void;
  runnerDisconnected(runner: RunnerConnection): void;
  /** The start this connection delivered reports running: requests may go to it now. */
  reportedRunning(runner: RunnerConnection, actorId: string, generation: number): void;
}

export interface RunnerConnectionDeps {
  db: Db;
  client: Client;
  config: Config;
  log: Logger;
  gatewayId: string;
  /** Records a runner ping; the gateway flushes them to Postgres in one write per tick (runner-pings.ts). */
  touch: (runner: RunnerConnection) => void;
  tunnel: TunnelSink;
}

export class RunnerConnection implements SpeakingRunner {
  private readonly sent = new Set<string>();
  /** Per actor, the generation whose StartActor this connection delivered last. */
  private readonly started = new Map<string, number>();
  /** Per actor, the gateway of each request in the snapshot of that start, until it reports what it restored. */
  private readonly snapshots = new Map<string, { generation: number; holders: Map<string, string> }>();
  private delivering: Promise<void> | null = null;
  private deliverAgain = false;
  /** Events go to their workflows in order per actor; actors proceed independently. */
  private readonly eventQueues = new KeyedQueue();
  private closed = false;
  private lastPingAt = Date.now();
  readonly log: Logger;

  constructor(
    readonly runnerId: string,
    /** The registry's connection epoch of this connection (db/runners.ts connectRunner). */
    readonly epoch: number,
    private readonly ws: WebSocket,
    private readonly deps: RunnerConnectionDeps,
  ) {
    this.log = deps.log.child({ runnerId, epoch });
    ws.on('message', (data, isBinary) => this.onFrame(isBinary ? null : wsText(data)));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  startedHere(actorId: string, generation: number): boolean {
    return this.started.get(actorId) === generation;
  }

  /**
   * The gateway holding each request of the snapshot this connection delivered with that start
   * (taken once: the start's restore report is its only reader); empty if it delivered none.
   */
  takeSnapshotHolders(actorId: string, generation: number): Map<string, string> {
    const snapshot = this.snapshots.get(actorId);
    if (snapshot?.generation !== generation) return new Map();
    this.snapshots.delete(actorId);
    return snapshot.holders;
  }

  /** Milliseconds since the runner's last ping; the endpoint closes silent runners. */
  silenceMs(now: number): number {
    return now - this.lastPingAt;
  }

  send(message: GatewayToRunner): void {
    if (this.closed) return;
    this.ws.send(JSON.stringify(message));
  }

  close(code: number, reason: string): void {
    this.ws.close(code, closeReason(reason));
  }

  /** Called once the socket has closed, whoever closed it. */
  async onClosed(): Promise<void> {
    this.closed = true;
    this.deps.tunnel.runnerDisconnected(this);
    await disconnectRunner(this.deps.db, this, this.deps.gatewayId);
  }

  /**
   * Sends every queued command this connection has not sent yet. Runs one delivery at a time;
   * a notification that arrives meanwhile triggers one more pass.
   */
  deliverPending(): void {
    if (this.delivering) {
      this.deliverAgain = true;
      return;
    }
    this.delivering = this.deliverOnce()
      .catch((err: unknown) => this.log.error({ err }, 'command delivery failed'))
      .finally(() => {
        this.delivering = null;
        if (this.deliverAgain && !this.closed) {
          this.deliverAgain = false;
          this.deliverPending();
        }
      });
  }

  private async deliverOnce(): Promise<void> {
    const commands = await pendingCommands(this.deps.db, this.runnerId);
    const fresh = commands.filter((c) => !this.sent.has(commandKey(c)));
    if (fresh.length === 0 || this.closed) return;
    for (const c of fresh) {
      this.sent.add(commandKey(c));
      if (c.command.kind !== 'startActor') continue;
      this.started.set(c.actorId, c.generation);
      const holders = new Map(c.command.hibernatingRequests.map((r) => [r.requestId, r.gatewayId]));
      this.snapshots.set(c.actorId, { generation: c.generation, holders });
    }
    this.send({ type: 'commands', commands: fresh });
    this.log.debug({ count: fresh.length }, 'commands delivered');
  }

  private onFrame(raw: string | null): void {
    if (raw === null) return this.protocolError('binary frames are not part of the protocol');
    const parsed = parseRunnerFrame(raw);
    if (!parsed.ok) return this.protocolError(parsed.error);
    this.handle(parsed.message).catch((err: unknown) =>
      this.log.error({ err, type: parsed.message.type }, 'runner message failed'),
    );
  }

  private protocolError(error: string): void {
    this.log.warn({ error }, 'malformed runner frame; closing its socket');
    this.close(RunnerCloseCode.ProtocolError, error);
  }

  private async handle(message: RunnerToGateway): Promise<void> {
    switch (message.type) {
      case 'hello':
        return this.protocolError('hello sent twice');
      case 'ping':
        this.lastPingAt = Date.now();
        this.deps.touch(this);
        this.send({ type: 'pong', ts: message.ts });
        return;
      case 'ackCommands':
        await ackCommands(this.deps.db, this.runnerId, message.acks);
        for (const ack of message.acks) this.sent.delete(commandKey(ack));
        return;
      case 'events':
        return this.takeEvents(message.events);
      case 'kvRequest':
        return this.serveKv(message);
      case 'drain':
        this.log.info('runner draining');
        return drainRunner(this.deps.db, this.runnerId);
      case 'tunnel':
        return this.deps.tunnel.fromRunner(this, message);
      case 'wsRestored':
        return this.deps.tunnel.restored(this, message);
    }
  }

  private takeEvents(events: EventEnvelope[]): void {
    const byActor = new Map<string, EventEnvelope[]>();
    for (const e of events) {
      byActor.set(e.actorId, [...(byActor.get(e.actorId) ?? []), e]);
      if (e.event.kind === 'running' && this.startedHere(e.actorId, e.generation))
        this.deps.tunnel.reportedRunning(this, e.actorId, e.generation);
    }
    for (const [actorId, batch] of byActor)
      void this.eventQueues.run(actorId, () => this.forwardEvents(actorId, batch));
  }

  /**
   * Signals the workflow until it holds the batch, then acknowledges. If the connection closes
   * first the events stay unacknowledged and the runner resends them on reconnect. Events of a
   * generation this runner does not (or no longer) host are acknowledged and dropped: a runner
   * speaks only for the actors placed on it.
   */
  private async forwardEvents(actorId: string, batch: EventEnvelope[]): Promise<void> {
    const signalled = await retryWithBackoff(
      async () => {
        const hosted = await this.hostedOnly(actorId, batch);
        const delivered = hosted.length === 0 || (await signalActor(this.deps.client, actorId, eventsSignal, hosted));
        if (!delivered) this.log.info({ actorId }, 'events for a finished actor workflow dropped');
        return true;
      },
      {
        stopped: () => this.closed,
        onError: (err, retryInMs) => this.log.warn({ err, actorId, retryInMs }, 'signalling events failed'),
      },
    );
    if (!signalled) return;
    this.log.debug(
      { actorId, events: batch.map((e) => `${e.generation}/${e.index}:${e.event.kind}`) },
      'events signalled',
    );
    this.send({
      type: 'ackEvents',
      acks: batch.map(({ actorId: a, generation, index }) => ({ actorId: a, generation, index })),
    });
  }

  private async hostedOnly(actorId: string, batch: EventEnvelope[]): Promise<EventEnvelope[]> {
    const generations = [...new Set(batch.map((e) => e.generation))];
    const allowed = new Set<number>();
    for (const generation of generations) {
      // The start this connection delivered is proof enough; the registry answers for the rest.
      if (this.startedHere(actorId, generation) || (await hosts(this.deps.db, this.runnerId, actorId, generation)))
        allowed.add(generation);
      else this.log.warn({ actorId, generation }, 'events for an actor generation this runner does not host; dropped');
    }
    return batch.filter((e) => allowed.has(e.generation));
  }

  private async serveKv(message: Extract<RunnerToGateway, { type: 'kvRequest' }>): Promise<void> {
    const fence = { actorId: message.actorId, runnerId: this.runnerId, generation: message.generation };
    try {
      const entries = await runKvOp(this.deps.db, fence, message.op);
      this.send({ type: 'kvResponse', kvId: message.kvId, result: { ok: true, entries } });
    } catch (err) {
      const fenced = err instanceof Fenced;
      if (!fenced) this.log.error({ err, actorId: message.actorId }, 'kv operation failed');
      this.send({
        type: 'kvResponse',
        kvId: message.kvId,
        result: {
          ok: false,
          code: fenced ? 'fenced' : 'internal',
          message: fenced ? err.message : 'kv operation failed',
        },
      });
    }
  }
}

function commandKey(c: { actorId: string; generation: number; idx: number }): string {
  return `${c.actorId}/${c.generation}/${c.idx}`;
}
