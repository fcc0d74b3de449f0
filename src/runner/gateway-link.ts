/**
 * The runner's socket to a gateway: connect, handshake, ping, and reconnect whenever the socket
 * drops, for as long as the runner runs. A runner may know several gateways (DESIGN §2.1): it
 * tries them in order, and when its gateway goes away it moves to the next one at once, so that
 * it is back well within the runner-lost threshold and keeps its actors; only after every gateway
 * failed in turn does it wait, with backoff. What to resend after a reconnect (unacknowledged
 * events, pending KV requests, outbound frames) is the runner's business: it hears `onWelcome`.
 */
import WebSocket from 'ws';
import type { Logger } from '../log.js';
import { closeReason } from '../protocol/close-reason.js';
import {
  HANDSHAKE_TIMEOUT_MS,
  MAX_FRAME_BYTES,
  PONG_SILENCE_INTERVALS,
  RunnerCloseCode,
  SUPPORTED_PROTOCOL_VERSIONS,
  parseGatewayFrame,
  type GatewayToRunner,
  type RunnerToGateway,
} from '../protocol/runner-protocol.js';
import { formatVersions, speaksVersion } from '../protocol/versions.js';
import { Backoff } from '../util/backoff.js';
import { wsText } from '../util/ws-data.js';

export type Welcome = Extract<GatewayToRunner, { type: 'welcome' }>;
type Hello = Extract<RunnerToGateway, { type: 'hello' }>;

export interface LinkHandlers {
  /** The hello to send, built at each connect (it lists the actors hosted right now). */
  hello(): Hello;
  onWelcome(welcome: Welcome): void;
  onMessage(message: Exclude<GatewayToRunner, { type: 'welcome' }>): void;
}

/**
 * The runner endpoints (`ws(s)://…/runners/connect`) of the gateway base URLs a runner was given,
 * in their order, without duplicates. Throws, naming the culprit, unless there is at least one and
 * each is an http(s) URL.
 */
export function runnerConnectUrls(gatewayUrl: string | readonly string[]): string[] {
  const given: readonly unknown[] = typeof gatewayUrl === 'string' ? [gatewayUrl] : gatewayUrl;
  if (given.length === 0) throw new Error('gatewayUrl: give at least one gateway URL, e.g. http://127.0.0.1:6420');
  const urls = given.map((raw) => {
    const url = typeof raw === 'string' && URL.canParse(raw) ? new URL(raw) : null;
    if (url?.protocol !== 'http:' && url?.protocol !== 'https:')
      throw new Error(`gatewayUrl: ${JSON.stringify(raw)} is not an http(s) URL, e.g. http://127.0.0.1:6420`);
    const connect = new URL('/runners/connect', url);
    connect.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return connect.toString();
  });
  return [...new Set(urls)];
}

/** A connection that held this long was a good one: its loss starts the rounds and delays over. */
export const STABLE_CONNECTION_MS = 10_000;

/**
 * Which gateway to try next, and when. Each failure moves on to the next URL: at once while some
 * URL of the round is untried (a failover costs no delay), after a backoff delay once every URL
 * has failed in turn. Losing a connection that held for `stableMs` starts the rounds and the
 * delays over; one that drops soon after its welcome counts as a failure, so that gateways that
 * welcome and then drop the runner are not retried in a tight loop.
 */
export class GatewayRotation {
  private index = 0;
  /** Attempts that failed in the current round. */
  private failures = 0;
  /** When `current` welcomed the runner; null while not connected. */
  private welcomedAt: number | null = null;

  constructor(
    readonly urls: readonly string[],
    private readonly backoff: Backoff = new Backoff(),
    private readonly stableMs = STABLE_CONNECTION_MS,
  ) {
    if (urls.length === 0) throw new Error('GatewayRotation needs at least one URL');
  }

  /** The URL to connect to now. */
  get current(): string {
    return this.urls[this.index]!;
  }

  /** `current` welcomed the runner. */
  welcomed(now = Date.now()): void {
    this.welcomedAt = now;
  }

  /** The socket to `current` closed (or never opened): moves on; returns the delay before the next attempt. */
  failed(now = Date.now()): number {
    if (this.welcomedAt !== null && now - this.welcomedAt >= this.stableMs) {
      this.failures = 0;
      this.backoff.reset();
    }
    this.welcomedAt = null;
    this.index = (this.index + 1) % this.urls.length;
    this.failures++;
    if (this.failures < this.urls.length) return 0;
    this.failures = 0;
    return this.backoff.next();
  }
}

export class GatewayLink {
  private ws: WebSocket | null = null;
  private ready = false;
  private stopped = false;
  /** The gateways in turn, and the reconnect delays; a welcome starts them over. */
  private readonly rotation: GatewayRotation;
  private pingTimer: NodeJS.Timeout | null = null;
  private lastPongAt = 0;
  private firstWelcome: { resolve: () => void; reject: (err: Error) => void } | null = null;

  constructor(
    /** The runner endpoint, or several tried in this order (see `runnerConnectUrls`). */
    urls: string | readonly string[],
    private readonly handlers: LinkHandlers,
    private readonly log: Logger,
    private readonly token?: string,
  ) {
    this.rotation = new GatewayRotation(typeof urls === 'string' ? [urls] : urls);
  }

  get connected(): boolean {
    return this.ready;
  }

  /** Resolves on the first welcome; rejects if the gateway refuses this runner for good. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.firstWelcome = { resolve, reject };
      this.connect();
    });
  }

  /** Sends a frame if the handshake is done; returns false otherwise (the caller keeps it for later). */
  send(message: RunnerToGateway): boolean {
    if (!this.ready || !this.ws) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  /** Test hook (RunnerFaults.onLink): drops the socket as a network fault would; the link reconnects. */
  drop(): void {
    this.ws?.terminate();
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.stopPinging();
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      ws.close(1000, 'runner shutting down');
      setTimeout(() => ws.terminate(), 2000).unref();
    });
  }

  private connect(): void {
    if (this.stopped) return;
    const url = this.rotation.current;
    this.log.debug({ gateway: url }, 'connecting to gateway');
    const ws = new WebSocket(url, {
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      maxPayload: MAX_FRAME_BYTES,
      headers: this.token ? { authorization: `Bearer ${this.token}` } : {},
    });
    this.ws = ws;
    let welcomed = false;
    const handshakeTimer = setTimeout(() => ws.terminate(), HANDSHAKE_TIMEOUT_MS);

    // A refused token is final: retrying with the same one cannot succeed.
    ws.on('unexpected-response', (_request, response) => {
      clearTimeout(handshakeTimer);
      if (response.statusCode === 401 || response.statusCode === 403) {
        this.stopped = true;
        this.log.error(
          { gateway: url, status: response.statusCode },
          'gateway refused the runner token; not reconnecting',
        );
        this.firstWelcome?.reject(
          new Error(`gateway refused the runner (HTTP ${response.statusCode}): check DORMOUSE_RUNNER_TOKEN`),
        );
        this.firstWelcome = null;
      }
      ws.terminate();
    });

    ws.on('open', () => ws.send(JSON.stringify(this.handlers.hello())));
    ws.on('message', (data, isBinary) => {
      const parsed = isBinary ? null : parseGatewayFrame(wsText(data));
      if (!parsed?.ok) {
        const error = parsed ? parsed.error : 'binary frame';
        this.log.error({ error }, 'malformed gateway frame; reconnecting');
        ws.close(RunnerCloseCode.ProtocolError, closeReason(error));
        return;
      }
      const message = parsed.message;
      if (message.type === 'welcome') {
        clearTimeout(handshakeTimer);
        if (!speaksVersion(SUPPORTED_PROTOCOL_VERSIONS, message.protocolVersion)) {
          const error = `the gateway chose protocol version ${message.protocolVersion}; this runner speaks ${formatVersions(SUPPORTED_PROTOCOL_VERSIONS)}`;
          this.log.error({ error }, 'bad welcome; reconnecting');
          ws.close(RunnerCloseCode.ProtocolError, closeReason(error));
          return;
        }
        welcomed = true;
        this.ready = true;
        this.rotation.welcomed();
        this.startPinging(ws, message.pingIntervalMs);
        this.log.info(
          {
            gateway: url,
            gatewayId: message.gatewayId,
            protocolVersion: message.protocolVersion,
            stale: message.staleActors.length,
          },
          'connected to gateway',
        );
        this.handlers.onWelcome(message);
        this.firstWelcome?.resolve();
        this.firstWelcome = null;
        return;
      }
      if (!welcomed) return;
      if (message.type === 'pong') {
        this.lastPongAt = Date.now();
        return;
      }
      this.handlers.onMessage(message);
    });
    ws.on('error', (err) => this.log.debug({ err: err.message }, 'gateway socket error'));
    ws.on('close', (code, reason) => {
      clearTimeout(handshakeTimer);
      this.ready = false;
      this.stopPinging();
      if (this.stopped) return;
      if (code === RunnerCloseCode.UnsupportedVersion || code === RunnerCloseCode.Unauthorized) {
        const err = new Error(`gateway refused the runner (${code}): ${reason.toString()}`);
        this.log.error(
          { gateway: url, code, reason: reason.toString() },
          'gateway refused the runner; not reconnecting',
        );
        this.firstWelcome?.reject(err);
        this.firstWelcome = null;
        return;
      }
      const delay = this.rotation.failed();
      const next = this.rotation.current;
      // Warn when the connection is lost and when every gateway failed in turn; not per failed try.
      this.log[welcomed || delay > 0 ? 'warn' : 'debug'](
        { gateway: url, code, reason: reason.toString(), next, retryInMs: delay },
        delay > 0 ? 'gateway socket closed; reconnecting' : 'gateway socket closed; trying the next gateway',
      );
      setTimeout(() => this.connect(), delay);
    });
  }

  /** App-level pings keep the runner live in the registry; silence from the gateway means a dead socket. */
  private startPinging(ws: WebSocket, intervalMs: number): void {
    this.stopPinging();
    this.lastPongAt = Date.now();
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastPongAt > intervalMs * PONG_SILENCE_INTERVALS) {
        this.log.warn('no pong from the gateway; dropping the socket');
        ws.terminate();
        return;
      }
      this.send({ type: 'ping', ts: Date.now() });
    }, intervalMs);
    this.pingTimer.unref();
  }

  private stopPinging(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }
}
