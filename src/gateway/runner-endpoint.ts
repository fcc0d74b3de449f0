/**
 * `GET /runners/connect`: the runner protocol's handshake and the registry of runners connected
 * to this gateway. A runner must say `hello` (the protocol versions it speaks, identity, capacity,
 * the actors it hosts) before anything else; the gateway answers `welcome` with the version they
 * will speak and the actors it must drop, then delivers its queued commands.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { actorsPlacedOn, connectRunner } from '../db/runners.js';
import { closeReason } from '../protocol/close-reason.js';
import { Unauthorized } from '../errors.js';
import {
  HANDSHAKE_TIMEOUT_MS,
  MAX_FRAME_BYTES,
  RunnerCloseCode,
  SUPPORTED_PROTOCOL_VERSIONS,
  parseRunnerFrame,
  type RunnerToGateway,
} from '../protocol/runner-protocol.js';
import { formatVersions, helloVersions, negotiateVersion } from '../protocol/versions.js';
import { bearerToken, poolOfToken } from './auth.js';
import { rejectUpgrade } from './reject-upgrade.js';
import { RunnerConnection, type RunnerConnectionDeps } from './runner-connection.js';
import { wsText } from '../util/ws-data.js';

type Hello = Extract<RunnerToGateway, { type: 'hello' }>;

export class RunnerEndpoint {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  private readonly runners = new Map<string, RunnerConnection>();
  private readonly silenceCheck: NodeJS.Timeout;

  constructor(private readonly deps: RunnerConnectionDeps) {
    // A runner that stops pinging (a dead TCP peer never closes) is dropped after the lost threshold.
    const { runnerLostMs } = deps.config.timing;
    this.silenceCheck = setInterval(() => this.dropSilentRunners(runnerLostMs), Math.min(runnerLostMs, 5000));
    this.silenceCheck.unref();
  }

  get(runnerId: string): RunnerConnection | undefined {
    return this.runners.get(runnerId);
  }

  connections(): RunnerConnection[] {
    return [...this.runners.values()];
  }

  /** A command for one of our runners was queued. */
  onCommandsQueued(runnerId: string): void {
    this.runners.get(runnerId)?.deliverPending();
  }

  /** Notifications may have been missed: re-read every runner's queue. */
  redeliverAll(): void {
    for (const runner of this.runners.values()) runner.deliverPending();
  }

  /**
   * With runner tokens configured, the upgrade must carry one (`Authorization: Bearer`), and the
   * runner may then join only that token's pool.
   */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const { runnerTokens } = this.deps.config.auth;
    let pool: string | undefined;
    if (runnerTokens.size > 0) {
      pool = poolOfToken(runnerTokens, bearerToken(request.headers));
      if (!pool) {
        this.deps.log.warn({ remote: request.socket.remoteAddress }, 'runner refused: no valid token');
        return rejectUpgrade(socket, new Unauthorized('a runner token is required (Authorization: Bearer <token>)'));
      }
    }
    this.wss.handleUpgrade(request, socket, head, (ws) => this.awaitHello(ws, pool));
  }

  async close(): Promise<void> {
    clearInterval(this.silenceCheck);
    for (const runner of this.runners.values()) runner.close(RunnerCloseCode.GatewayShutdown, 'gateway shutting down');
    this.wss.close();
  }

  private awaitHello(ws: WebSocket, authorizedPool: string | undefined): void {
    const timer = setTimeout(
      () => ws.close(RunnerCloseCode.HandshakeTimeout, `no hello within ${HANDSHAKE_TIMEOUT_MS / 1000} s`),
      HANDSHAKE_TIMEOUT_MS,
    );
    ws.once('message', (data, isBinary) => {
      clearTimeout(timer);
      const handshake = this.readHello(ws, isBinary ? null : wsText(data), authorizedPool);
      if (!handshake) return;
      // Nothing else is read until the runner is registered and its handlers are attached.
      ws.pause();
      this.accept(ws, handshake.hello, handshake.version).then(
        () => ws.resume(),
        (err: unknown) => {
          this.deps.log.error({ err }, 'runner handshake failed');
          ws.close(1011, 'handshake failed');
        },
      );
    });
  }

  /**
   * The hello and the version both ends speak; or null, the socket closed with why. Versions
   * come first: a runner of another version hears that, not which of its fields this one lacks.
   */
  private readHello(
    ws: WebSocket,
    raw: string | null,
    authorizedPool: string | undefined,
  ): { hello: Hello; version: number } | null {
    const offered = raw === null ? null : helloVersions(raw);
    const version = offered && negotiateVersion(offered, SUPPORTED_PROTOCOL_VERSIONS);
    if (offered && version === null) {
      const reason = `runner speaks protocol versions ${formatVersions(offered)}; this gateway speaks ${formatVersions(SUPPORTED_PROTOCOL_VERSIONS)}`;
      ws.close(RunnerCloseCode.UnsupportedVersion, closeReason(reason));
      return null;
    }
    const parsed = raw === null ? null : parseRunnerFrame(raw);
    if (!parsed?.ok || parsed.message.type !== 'hello' || version === null) {
      const error = parsed && !parsed.ok ? parsed.error : 'the first frame must be a hello';
      ws.close(RunnerCloseCode.ProtocolError, closeReason(error));
      return null;
    }
    if (authorizedPool !== undefined && parsed.message.pool !== authorizedPool) {
      ws.close(RunnerCloseCode.Unauthorized, closeReason(`the token is not valid for pool ${parsed.message.pool}`));
      return null;
    }
    const refused = this.refusedActorNames(parsed.message);
    if (refused.length > 0) {
      const reason = `pool ${parsed.message.pool} may not host ${refused.join(', ')}`;
      this.deps.log.warn({ runnerId: parsed.message.runnerId, pool: parsed.message.pool, refused }, 'runner refused');
      ws.close(RunnerCloseCode.Unauthorized, closeReason(reason));
      return null;
    }
    return { hello: parsed.message, version };
  }

  /** The actor types of a hello that the operator did not allow its pool (DORMOUSE_POOL_ACTORS). */
  private refusedActorNames(hello: Hello): string[] {
    const { poolActors } = this.deps.config.auth;
    if (!poolActors) return [];
    const allowed = poolActors.get(hello.pool);
    return hello.actorNames.filter((name) => !allowed?.has(name));
  }

  private async accept(ws: WebSocket, hello: Hello, version: number): Promise<void> {
    const { db, gatewayId, config } = this.deps;
    const capacity = Math.min(hello.capacity, config.gateway.runnerMaxCapacity);
    if (capacity < hello.capacity)
      this.deps.log.warn(
        { runnerId: hello.runnerId, asked: hello.capacity, capacity },
        'runner capacity clamped to DORMOUSE_RUNNER_MAX_CAPACITY',
      );
    const epoch = await connectRunner(db, {
      runnerId: hello.runnerId,
      pool: hello.pool,
      capacity,
      actorNames: hello.actorNames,
      protocolVersion: version,
      gatewayId,
    });
    if (epoch === null) {
      this.deps.log.warn(
        { runnerId: hello.runnerId, pool: hello.pool },
        'runner refused: its id belongs to another pool',
      );
      return ws.close(RunnerCloseCode.Unauthorized, closeReason(`runner ${hello.runnerId} belongs to another pool`));
    }
    const previous = this.runners.get(hello.runnerId);
    if (previous) previous.close(RunnerCloseCode.Replaced, 'replaced by a newer connection of the same runner');

    const runner = new RunnerConnection(hello.runnerId, epoch, ws, this.deps);
    this.runners.set(hello.runnerId, runner);
    ws.on('close', (code, reason) => {
      if (this.runners.get(hello.runnerId) === runner) this.runners.delete(hello.runnerId);
      runner.log.info({ code, reason: reason.toString() }, 'runner disconnected');
      runner.onClosed().catch((err: unknown) => runner.log.error({ err }, 'recording runner disconnect failed'));
    });

    // Fence on reconnect: whatever the runner still hosts that the registry placed elsewhere
    // (or at another generation) must stop, or the actor would run twice.
    const placed = await actorsPlacedOn(db, hello.runnerId);
    const staleActors = hello.actors.filter((a) => placed.get(a.actorId) !== a.generation);
    runner.send({
      type: 'welcome',
      protocolVersion: version,
      runnerId: hello.runnerId,
      gatewayId,
      pingIntervalMs: config.timing.runnerPingMs,
      staleActors,
    });
    runner.log.info(
      {
        name: hello.name,
        protocolVersion: version,
        pool: hello.pool,
        capacity,
        hosted: hello.actors.length,
        stale: staleActors.length,
      },
      'runner connected',
    );
    runner.deliverPending();
    this.deps.tunnel.runnerConnected(hello.runnerId);
  }

  private dropSilentRunners(thresholdMs: number): void {
    const now = Date.now();
    for (const runner of this.runners.values()) {
      if (runner.silenceMs(now) > thresholdMs) {
        runner.log.warn('runner silent past the lost threshold; closing its socket');
        runner.close(RunnerCloseCode.ProtocolError, 'no ping within the lost threshold');
      }
    }
  }
}
