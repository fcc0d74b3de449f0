/**
 * The tunnel: both ends of the gateway's data plane in one owner. The runner end is the runners
 * connected here (RunnerEndpoint); the client end is the tunnelled HTTP requests in flight
 * (HttpExchanges) and the client WebSockets (ClientSocketHub). Requests reach a running actor by
 * one route (ActorRouter, waking it through the one Waker); every frame for a runner leaves
 * through `sendToRunner`, and every tunnel frame a runner sends comes back through `fromRunner`,
 * where it is routed by its request id alone once the runner is known to speak for that request.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Client } from '@temporalio/client';
import type { Config } from '../config.js';
import type { ActorStateNotice } from '../db/channels.js';
import type { Db } from '../db/pool.js';
import { RunnerUnreachable } from '../errors.js';
import type { Logger } from '../log.js';
import type { GatewayToRunner, RunnerToGateway, RunnerTunnelFrame } from '../protocol/runner-protocol.js';
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
import { judgeRunnerFrame, mayReportRestored } from './speaks-for.js';
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

export class Tunnel implements TunnelSink {
  readonly runners: RunnerEndpoint;
  private readonly sockets: ClientSocketHub;
  private readonly exchanges = new HttpExchanges();
  private readonly watch: ActorWatch;
  private readonly waker: Waker;
  private readonly router: ActorRouter;
  private readonly log: Logger;

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
    this.router = new ActorRouter(this.watch, this.waker, config.timing.wakeTimeoutMs, this.log);
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
    });
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
      if (!runner) throw new RunnerUnreachable(`actor ${actorId} runs on a runner not connected to this gateway`);
      return this.exchanges.send(runner, actor, request, this.deps.config.gateway.requestTimeoutMs);
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

  /** Sends a frame to a runner connected to this gateway; false if it is not. */
  sendToRunner(runnerId: string, frame: GatewayToRunner): boolean {
    const runner = this.runners.get(runnerId);
    if (!runner || runner.isClosed) return false;
    runner.send(frame);
    return true;
  }

  fromRunner(runner: RunnerConnection, frame: RunnerTunnelFrame): void {
    const exchange = this.exchanges.held(frame.requestId);
    const verdict = judgeRunnerFrame(runner, frame, exchange ?? this.sockets.held(frame.requestId));
    if (verdict === 'take')
      return exchange ? this.exchanges.answer(frame) : this.sockets.fromRunner(runner.runnerId, frame);
    if (verdict === 'closeOrphan') {
      // The client went away before the actor accepted it: the actor must not keep it.
      const { requestId, actorId, generation } = frame;
      return runner.send({
        type: 'tunnel',
        requestId,
        actorId,
        generation,
        message: { kind: 'wsClose', code: 1001, reason: 'the client went away' },
      });
    }
    const { requestId, message } = frame;
    this.log.debug(
      { runnerId: runner.runnerId, requestId, kind: message.kind },
      'runner frame for a request it does not hold; dropped',
    );
  }

  restored(runner: RunnerConnection, report: Extract<RunnerToGateway, { type: 'wsRestored' }>): void {
    if (mayReportRestored(runner, report.actorId, report.generation))
      return this.sockets.onRestored(runner.runnerId, report);
    this.log.debug(
      { runnerId: runner.runnerId, actorId: report.actorId, generation: report.generation },
      'restore report for a start not given to this runner; dropped',
    );
  }

  runnerConnected(runnerId: string): void {
    this.sockets.runnerConnected(runnerId);
  }

  runnerDisconnected(runner: RunnerConnection): void {
    this.exchanges.runnerGone(runner);
  }

  reportedRunning(runner: RunnerConnection, actorId: string, generation: number): void {
    this.watch.onReportedRunning(actorId, generation, runner.runnerId);
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
    this.sockets.close();
    this.waker.close();
    await this.runners.close();
  }
}
