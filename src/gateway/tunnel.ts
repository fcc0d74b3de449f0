/**
 * The tunnel: both ends of the gateway's data plane in one owner. The runner end is the runners
 * connected here (RunnerEndpoint); the client end is the tunnelled HTTP requests in flight
 * (HttpExchanges) and the client WebSockets (ClientSocketHub). Requests reach a running actor by
 * one route (ActorRouter, waking it through the one Waker); every frame for a runner leaves
 * through `sendToRunner`, and every tunnel frame a runner sends comes back through `fromRunner`,
 * where it is routed by its request id alone once the runner is known to speak for that request.
 *
 * With several gateways (DESIGN §2.1) the two ends may sit on different gateways: a frame for a
 * runner connected elsewhere, and a runner frame for a request held elsewhere, cross the bus
 * (RemoteGateways); the gateway holding the request judges the frame as if the runner were its own.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Client } from '@temporalio/client';
import type { Config } from '../config.js';
import type { ActorStateNotice } from '../db/channels.js';
import type { Db } from '../db/pool.js';
import { ActorTimeout, NotHosted, RunnerUnreachable } from '../errors.js';
import type { Logger } from '../log.js';
import type { BusHttpReply, BusHttpRequest, BusMessage } from '../protocol/gateway-bus.js';
import type { GatewayTunnelFrame, RunnerTunnelFrame, WsRestored } from '../protocol/runner-protocol.js';
import { signalActor } from '../temporal-client.js';
import { wakeSignal } from '../workflows/actor-api.js';
import { ActorRouter } from './actor-router.js';
import { ActorWatch } from './actor-watch.js';
import { ClientSocketHub } from './client-sockets.js';
import { HibernationRegistry } from './hibernation-registry.js';
import { HttpExchanges, type TunnelledRequest, type TunnelledResponse } from './http-exchanges.js';
import type { SocketStats, WakeTrigger } from './metrics.js';
import type { RunnerConnection, TunnelSink } from './runner-connection.js';
import { RunnerEndpoint } from './runner-endpoint.js';
import { NatsBus, type BusHandlers } from './nats-bus.js';
import { RemoteGateways } from './remote-gateways.js';
import { RunnerArrivals } from './runner-arrivals.js';
import { judgeRunnerFrame, mayReportRestored, type HeldRequest, type SpeakingRunner } from './speaks-for.js';
import { Waker } from './wakes.js';

export interface TunnelDeps {
  db: Db;
  client: Client;
  config: Config;
  log: Logger;
  gatewayId: string;
  /** Records a runner ping; the gateway flushes them to Postgres in one write per tick. */
  touch: (runner: RunnerConnection) => void;
  /** Told of every wake signal sent (metrics). */
  onWake: (actorId: string, trigger: WakeTrigger) => void;
}

const ACTOR_WS = /^\/actors\/([^/]+)\/ws(?=\/|\?|$)/;
/** Runner frames after which a request is over (a WebSocket open answered notHosted is retried anew). */
const ENDS_REQUEST = new Set<RunnerTunnelFrame['message']['kind']>(['wsClose', 'httpResponse', 'notHosted']);

export class Tunnel implements TunnelSink, BusHandlers {
  readonly runners: RunnerEndpoint;
  private readonly sockets: ClientSocketHub;
  private readonly exchanges = new HttpExchanges();
  private readonly arrivals = new RunnerArrivals();
  private readonly watch: ActorWatch;
  private readonly waker: Waker;
  private readonly router: ActorRouter;
  private readonly log: Logger;
  /** The other gateways; null while this gateway is alone (no DORMOUSE_NATS_URL). */
  private remote: RemoteGateways | null = null;
  private bus: NatsBus | null = null;

  constructor(private readonly deps: TunnelDeps) {
    const { db, client, config, gatewayId } = deps;
    this.log = deps.log.child({ part: 'tunnel' });
    this.watch = new ActorWatch(db);
    this.waker = new Waker({
      signal: (actorId) => signalActor(client, actorId, wakeSignal),
      onWake: deps.onWake,
      minIntervalMs: config.gateway.wakeMinIntervalMs,
      log: this.log,
    });
    this.router = new ActorRouter(
      this.watch,
      this.waker,
      (runnerId, untilMs) => this.arrivals.wait(runnerId, untilMs),
      config.timing,
      this.log,
    );
    // The runner end hands its frames back here only once a runner has connected.
    this.runners = new RunnerEndpoint({
      db,
      client,
      config,
      log: deps.log,
      gatewayId,
      touch: deps.touch,
      tunnel: this,
    });
    this.sockets = new ClientSocketHub({
      db,
      config,
      log: deps.log,
      gatewayId,
      router: this.router,
      waker: this.waker,
      registry: new HibernationRegistry(db, gatewayId),
      sendToRunner: (runnerId, frame) => this.sendToRunner(runnerId, frame),
      isLocalRunner: (runnerId) => this.runners.get(runnerId) !== undefined,
      announceSessionTaken: (requestId) => this.remote?.sessionTaken(requestId),
    });
  }

  /** Joins the gateway bus (DESIGN §2.1); frames stay in process until then. */
  async joinBus(servers: string[]): Promise<void> {
    const { config, gatewayId, db, log } = this.deps;
    // The largest frame crossing: a client message or body, base64-encoded in JSON, plus headers.
    const largest = Math.ceil((Math.max(config.gateway.maxMessageBytes, config.gateway.maxBodyBytes) * 4) / 3) + 65_536;
    this.bus = await NatsBus.join(servers, gatewayId, largest, this, log);
    this.remote = new RemoteGateways(this.bus, db, gatewayId, this.log);
    for (const runner of this.runners.connections()) this.remote.runnerConnected(runner.runnerId);
  }

  /** Client sockets held, for health and metrics. */
  stats(): SocketStats {
    return this.sockets.stats();
  }

  /** Requests waiting for their actor to run. */
  get waiting(): number {
    return this.watch.waiting;
  }

  // --- The client end -----------------------------------------------------------------------

  /** Tunnels one HTTP request to the actor (waking it) and waits for its answer. */
  request(actorId: string, request: TunnelledRequest): Promise<TunnelledResponse> {
    return this.router.route(actorId, 'http', async (actor) => {
      const runner = this.runners.get(actor.runnerId);
      const { requestTimeoutMs } = this.deps.config.gateway;
      if (runner) return this.exchanges.send(runner, actor, request, requestTimeoutMs);
      if (!this.remote) throw new RunnerUnreachable(`actor ${actorId} runs on a runner not connected to this gateway`);
      return this.remote.request(actor, request, requestTimeoutMs);
    });
  }

  /** `GET /runners/connect` and `GET /actors/:actorId/ws/*`; any other upgrade is a 404. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = request.url ?? '/';
    const { pathname } = new URL(url, 'http://gateway');
    if (pathname === '/runners/connect') return this.runners.handleUpgrade(request, socket, head);
    const actorWs = ACTOR_WS.exec(url);
    if (actorWs) {
      const rest = url.slice(actorWs[0].length);
      return this.sockets.handleUpgrade(request, socket, head, actorWs[1]!, rest.startsWith('/') ? rest : `/${rest}`);
    }
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  }

  // --- The runner end -----------------------------------------------------------------------

  /**
   * Sends a tunnel frame to a runner, over the bus if it is connected to another gateway; false
   * if it is not connected here and there is no bus (the sockets resend their frames once it is).
   */
  sendToRunner(runnerId: string, frame: GatewayTunnelFrame): boolean {
    return this.sendToLocalRunner(runnerId, frame, this.deps.gatewayId) || this.sendToRemoteRunner(runnerId, frame);
  }

  private sendToLocalRunner(runnerId: string, frame: GatewayTunnelFrame, holder: string): boolean {
    const runner = this.runners.get(runnerId);
    if (!runner || runner.isClosed) return false;
    if (frame.message.kind === 'wsClose') this.remote?.released(frame.requestId);
    else this.remote?.holds(frame.requestId, holder);
    runner.send(frame);
    return true;
  }

  private sendToRemoteRunner(runnerId: string, frame: GatewayTunnelFrame): boolean {
    if (!this.remote) return false;
    this.remote.sendToRunner(runnerId, frame);
    return true;
  }

  fromRunner(runner: RunnerConnection, frame: RunnerTunnelFrame): void {
    const held = this.heldHere(frame.requestId);
    if (held || !this.remote?.forwardFromRunner(runner, frame)) this.takeFromRunner(runner, frame, held);
    // The request's last word: who held it need not be remembered any more.
    if (ENDS_REQUEST.has(frame.message.kind)) this.remote?.released(frame.requestId);
  }

  private heldHere(requestId: string): HeldRequest | undefined {
    return this.exchanges.held(requestId) ?? this.sockets.held(requestId);
  }

  /** A runner frame for a request held here, from a runner connected here or elsewhere. */
  private takeFromRunner(runner: SpeakingRunner, frame: RunnerTunnelFrame, held: HeldRequest | undefined): void {
    const verdict = judgeRunnerFrame(runner, frame, held);
    if (verdict === 'take')
      return this.exchanges.held(frame.requestId)
        ? this.exchanges.answer(frame)
        : this.sockets.fromRunner(runner.runnerId, frame);
    if (verdict === 'closeOrphan') {
      // The client went away before the actor accepted it: the actor must not keep it.
      const { requestId, actorId, generation } = frame;
      this.sendToRunner(runner.runnerId, {
        type: 'tunnel',
        requestId,
        actorId,
        generation,
        message: { kind: 'wsClose', code: 1001, reason: 'the client went away' },
      });
      return;
    }
    const { requestId, message } = frame;
    this.log.debug(
      { runnerId: runner.runnerId, requestId, kind: message.kind },
      'runner frame for a request it does not hold; dropped',
    );
  }

  restored(runner: RunnerConnection, report: WsRestored): void {
    if (mayReportRestored(runner, report.actorId, report.generation)) {
      const holders = runner.takeSnapshotHolders(report.actorId, report.generation);
      const self = this.deps.gatewayId;
      this.sockets.onRestored(runner.runnerId, report, (requestId) => (holders.get(requestId) ?? self) === self);
      return this.remote?.restored(runner.runnerId, report, holders);
    }
    this.log.debug(
      { runnerId: runner.runnerId, actorId: report.actorId, generation: report.generation },
      'restore report for a start not given to this runner; dropped',
    );
  }

  runnerConnected(runnerId: string): void {
    this.remote?.runnerConnected(runnerId);
    this.sockets.runnerConnected(runnerId);
    this.arrivals.arrived(runnerId);
  }

  runnerDisconnected(runner: RunnerConnection): void {
    this.exchanges.runnerGone(runner);
    // Only the runner's current connection speaks for where it is.
    if (this.runners.get(runner.runnerId) === undefined) this.remote?.runnerDisconnected(runner.runnerId);
  }

  reportedRunning(runner: RunnerConnection, actorId: string, generation: number): void {
    this.watch.onReportedRunning(actorId, generation, runner.runnerId);
    this.remote?.reportedRunning(runner.runnerId, actorId, generation);
  }

  // --- The other gateways (the bus) ---------------------------------------------------------

  onMessage(message: BusMessage, direct: boolean): void {
    switch (message.type) {
      case 'toRunner':
        if (!this.sendToLocalRunner(message.runnerId, message.frame, message.from))
          this.log.debug(
            { runnerId: message.runnerId, from: message.from },
            'bus frame for a runner not here; dropped',
          );
        return;
      case 'fromRunner': {
        const held = this.heldHere(message.frame.requestId);
        // A frame sent to all gateways is for the one holding its request.
        if (!held && !direct) return;
        const speaker = { runnerId: message.runnerId, startedHere: () => message.startedHere };
        return this.takeFromRunner(speaker, message.frame, held);
      }
      case 'restored': {
        const self = this.deps.gatewayId;
        return this.sockets.onRestored(message.runnerId, message.report, (id) => message.holders[id] === self);
      }
      case 'runnerConnected':
        this.remote?.runnerAt(message.runnerId, message.gatewayId);
        this.sockets.runnerConnected(message.runnerId);
        return this.arrivals.arrived(message.runnerId);
      case 'runnerDisconnected':
        return this.remote?.runnerLeft(message.runnerId, message.gatewayId);
      case 'reportedRunning':
        return this.watch.onReportedRunning(message.actorId, message.generation, message.runnerId);
      case 'rejoined':
        return this.sockets.resyncRemote();
      case 'sessionTaken':
        return this.sockets.onSessionTaken(message.requestId);
    }
  }

  /** An HTTP request from another gateway for an actor on a runner connected here. */
  async onHttpRequest(request: BusHttpRequest): Promise<BusHttpReply> {
    const runner = this.runners.get(request.runnerId);
    if (!runner)
      return { ok: false, error: 'unreachable', message: `runner ${request.runnerId} is not connected here` };
    const { method, path, headers, body } = request.request;
    try {
      const response = await this.exchanges.send(
        runner,
        { actorId: request.actorId, generation: request.generation },
        { method, path, headers, body: body === null ? null : Buffer.from(body, 'base64') },
        this.deps.config.gateway.requestTimeoutMs,
      );
      const encoded = response.body === null ? null : response.body.toString('base64');
      return {
        ok: true,
        response: { kind: 'httpResponse', status: response.status, headers: response.headers, body: encoded },
      };
    } catch (err) {
      if (err instanceof NotHosted) return { ok: false, error: 'notHosted', message: err.message };
      if (err instanceof ActorTimeout) return { ok: false, error: 'timeout', message: err.message };
      throw err;
    }
  }

  /**
   * Bus messages may have been lost: where runners are is read again, sockets on runners of
   * other gateways re-synchronise, and the others are asked to do the same with this one.
   */
  onMessagesLost(): void {
    this.remote?.forgetRunners();
    this.sockets.resyncRemote();
    this.remote?.rejoined();
  }

  // --- The control plane --------------------------------------------------------------------

  /** An actor's state changed (NOTIFY): wakes may go again, waiters read again, sockets follow. */
  onActorState(notice: ActorStateNotice): void {
    this.waker.onNotice(notice.actorId, notice.state);
    this.watch.onNotice(notice);
    this.sockets.onActorState(notice);
  }

  /** The LISTEN connection came back: notices may have been missed, so everyone reads again. */
  onNotificationsLost(): void {
    this.waker.onReconnect();
    this.runners.redeliverAll();
    this.watch.onReconnect();
    void this.sockets.resync();
  }

  /** H2: this gateway's registration lapsed; its hibernatable sockets are no longer claimed. */
  abandonHibernatable(): void {
    this.sockets.abandonHibernatable();
  }

  /** Shutdown: clients are told to go away, runners that the gateway is going. */
  async close(): Promise<void> {
    await this.sockets.close();
    this.waker.close();
    await this.runners.close();
    await this.bus?.close();
  }
}
