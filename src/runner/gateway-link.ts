/**
 * The runner's socket to the gateway: connect, handshake, ping, and reconnect with backoff
 * whenever the socket drops, for as long as the runner runs. What to resend after a reconnect
 * (unacknowledged events, pending KV requests) is the runner's business: it hears `onWelcome`.
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

export class GatewayLink {
  private ws: WebSocket | null = null;
  private ready = false;
  private stopped = false;
  /** The reconnect delays; a welcome starts them over. */
  private readonly backoff = new Backoff();
  private pingTimer: NodeJS.Timeout | null = null;
  private lastPongAt = 0;
  private firstWelcome: { resolve: () => void; reject: (err: Error) => void } | null = null;

  constructor(
    private readonly url: string,
    private readonly handlers: LinkHandlers,
    private readonly log: Logger,
    private readonly token?: string,
  ) {}

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
    const ws = new WebSocket(this.url, {
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
        this.log.error({ status: response.statusCode }, 'gateway refused the runner token; not reconnecting');
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
        this.backoff.reset();
        this.startPinging(ws, message.pingIntervalMs);
        this.log.info(
          { gatewayId: message.gatewayId, protocolVersion: message.protocolVersion, stale: message.staleActors.length },
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
        this.log.error({ code, reason: reason.toString() }, 'gateway refused the runner; not reconnecting');
        this.firstWelcome?.reject(err);
        this.firstWelcome = null;
        return;
      }
      const delay = this.backoff.next();
      this.log.warn({ code, reason: reason.toString(), retryInMs: delay }, 'gateway socket closed; reconnecting');
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
