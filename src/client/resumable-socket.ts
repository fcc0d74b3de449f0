/**
 * The client end of resumable sessions (DESIGN §5 H10, subprotocol `dormouse.v1`, see
 * protocol/session-protocol.ts): a WebSocket to an actor that survives the death of its socket or
 * of its gateway. Every own message is numbered and kept until the gateway acknowledges it; every
 * actor frame carries a `seq`, is delivered to the application once and in order, and is
 * acknowledged. When the socket is lost, the client resumes the session on the next gateway with
 * its token and the numbers it holds, resends what the gateway had not acknowledged, and gets
 * what it missed, so that neither side sees the break.
 *
 *   const socket = await ResumableSocket.open({ gateways: ['http://127.0.0.1:6420'], actorId });
 *   socket.on('message', (data) => console.log(data));
 *   socket.send('hello');
 */
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { z } from 'zod';
import { ClientCloseCode } from '../protocol/client-close-codes.js';
import { closeReason } from '../protocol/close-reason.js';
import {
  SESSION_SUBPROTOCOL,
  parseGatewaySessionFrame,
  type ClientSessionFrame,
  type GatewaySessionFrame,
} from '../protocol/session-protocol.js';
import { Backoff, type BackoffOptions } from '../util/backoff.js';
import { wsText } from '../util/ws-data.js';

export interface ResumableSocketOptions {
  /** Gateway base URLs (http or https); a lost socket resumes on the next one, cycling. */
  gateways: string[];
  actorId: string;
  /** Appended to `/actors/<actorId>/ws`: a sub-path and/or a query, e.g. `/room?name=ann`. */
  path?: string;
  /** How long to keep trying to resume a lost session before closing for good (default 60 s). */
  resumeWithinMs?: number;
  /** How long one attempt (the upgrade, then the gateway's `session` frame) may take (default 10 s). */
  connectTimeoutMs?: number;
  /**
   * WebSocket pings at this interval; a socket that answers none for two intervals is dropped and
   * resumed (a dead TCP connection otherwise goes unnoticed until the OS gives up). 0: no pings.
   */
  pingIntervalMs?: number;
  /** Told of each state change (connecting, session, lost, resumed, closed) with its details. */
  log?: (event: string, detail?: object) => void;
}

export interface ResumableSocketEvents {
  /** One actor frame: text as a string, binary as a Buffer; each once, in the actor's order. */
  message: [data: string | Buffer];
  /** The session resumed after a lost socket, on this gateway. */
  resumed: [gatewayUrl: string];
  /** Closed for good (no more reconnecting), once. */
  close: [code: number, reason: string];
  /** EventEmitter's own, before a listener is added. */
  newListener: [event: string | symbol, listener: (...args: unknown[]) => void];
}

/** `open` failed: the gateway closed the socket (or refused the upgrade) before giving a session. */
export class SessionClosedError extends Error {
  override name = 'SessionClosedError';

  constructor(
    message: string,
    /** The WebSocket close code (1006 when the socket never opened). */
    readonly code: number,
    readonly reason: string,
  ) {
    super(message);
  }
}

export const DEFAULT_RESUME_WITHIN_MS = 60_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_PING_INTERVAL_MS = 15_000;

/** Short: a gateway that died is replaced by the next one at once, and the actor's outbox waits. */
const RESUME_BACKOFF: BackoffOptions = { initialMs: 100, maxMs: 2_000, jitter: 0.5 };
/** Acknowledgements of actor frames wait this long, so that a burst costs one `ack`. */
const ACK_BATCH_MS = 5;
/** After sending a close frame, how long to wait for the gateway's before dropping the socket. */
const CLOSE_GRACE_MS = 2_000;
/**
 * A gateway that skips frames again right after each resume would make the client resume in a
 * loop: after this many gaps in a row (no frame delivered in order between them) it closes.
 */
const MAX_GAPS_IN_A_ROW = 3;

/**
 * The closes a resume can repair: the socket or TCP connection died (1006), the gateway is going
 * away (1001) or lost its registration (1012). Every other code is the gateway's or the actor's
 * decision about this session, which another socket would only meet again.
 */
const RESUME_ON = new Set<number>([1006, ClientCloseCode.GoingAway, ClientCloseCode.ServiceRestart]);

/** An own message not yet acknowledged: its number and its `msg` frame, ready to (re)send. */
interface PendingMessage {
  index: number;
  frame: string;
}

/** One socket to one gateway, from its upgrade to its close. */
interface Attempt {
  ws: WebSocket;
  gateway: string;
  /** The gateway's `session` frame arrived: the socket carries the session. */
  live: boolean;
  /** Given up on (a gap, a timeout): its remaining frames are ignored, its close resumes. */
  dropped: boolean;
  /** Bounds the upgrade and the wait for `session`. */
  timer: NodeJS.Timeout;
  /** The last socket error (why a 1006 happened), for the close reason. */
  error?: string;
  /** The gateway refused the upgrade with this HTTP answer. */
  refusal?: { status: number; message: string };
}

export class ResumableSocket extends EventEmitter<ResumableSocketEvents> {
  private readonly gateways: string[];
  private gatewayIndex = 0;
  private attempt: Attempt | null = null;
  private token: string | null = null;
  private closed = false;

  /** The last actor frame delivered, and the last one acknowledged to the gateway. */
  private seq = 0;
  private seqAcked = 0;
  /** The last own message numbered, and the last the gateway acknowledged. */
  private index = 0;
  private indexAcked = 0;
  private readonly outbox: PendingMessage[] = [];
  /** Actor frames received while nobody listened for `message` yet, in order. */
  private readonly unheard: (string | Buffer)[] = [];

  /** `open` in progress: settled by the first `session`, or by failing on every gateway. */
  private opening: { resolve: () => void; reject: (err: Error) => void; failures: number } | null = null;
  /** When the session's socket was lost (null while connected): resuming stops `resumeWithinMs` later. */
  private lostAt: number | null = null;
  private gapsInARow = 0;
  private readonly backoff = new Backoff(RESUME_BACKOFF);
  private retryTimer: NodeJS.Timeout | null = null;
  private ackTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;

  private constructor(
    gateways: string[],
    private readonly actorId: string,
    private readonly path: string,
    private readonly resumeWithinMs: number,
    private readonly connectTimeoutMs: number,
    private readonly pingIntervalMs: number,
    private readonly log: (event: string, detail?: object) => void,
  ) {
    super();
    this.gateways = gateways;
    // Emitted before the listener is added: delivered once it is.
    this.on('newListener', (event) => {
      if (event === 'message' && this.unheard.length > 0) queueMicrotask(() => this.flushUnheard());
    });
  }

  /**
   * Opens a new session: tries the gateways in order until one gives a session (a gateway that
   * cannot be reached, or is going away, passes to the next one). Rejects with a clear Error on
   * bad options, and with a SessionClosedError when every gateway failed or one refused.
   */
  static async open(options: ResumableSocketOptions): Promise<ResumableSocket> {
    const socket = new ResumableSocket(
      validGateways(options.gateways),
      validActorId(options.actorId),
      validPath(options.path ?? ''),
      validDuration('resumeWithinMs', options.resumeWithinMs ?? DEFAULT_RESUME_WITHIN_MS),
      validDuration('connectTimeoutMs', options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS),
      validDuration('pingIntervalMs', options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS, true),
      options.log ?? (() => {}),
    );
    await new Promise<void>((resolve, reject) => {
      socket.opening = { resolve, reject, failures: 0 };
      socket.connect();
    });
    return socket;
  }

  /** The session token (what a resume presents). */
  get session(): string {
    return this.token ?? '';
  }

  /** The `seq` of the last actor frame delivered. */
  get lastSeq(): number {
    return this.seq;
  }

  /** Own messages the gateway has not acknowledged yet (they are resent after a resume). */
  get pending(): number {
    return this.outbox.length;
  }

  /** The gateway the session is on (or being resumed on). */
  get gatewayUrl(): string {
    return this.gateways[this.gatewayIndex]!;
  }

  /**
   * Sends a message to the actor: now if the socket is up, else after the resume; kept until the
   * gateway acknowledges it. Throws once the socket is closed for good.
   */
  send(data: string | Buffer): void {
    if (this.closed) throw new Error('ResumableSocket.send: the socket is closed');
    const index = ++this.index;
    const binary = typeof data !== 'string';
    const frame = frameText({ t: 'msg', index, data: binary ? data.toString('base64') : data, binary });
    this.outbox.push({ index, frame });
    const attempt = this.attempt;
    if (attempt?.live && !attempt.dropped) attempt.ws.send(frame);
  }

  /** Ends the session (close code 1000); resolves once the socket is closed. */
  close(reason = 'bye'): Promise<void> {
    if (this.closed) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.once('close', () => resolve()));
    this.finish(1000, closeReason(reason));
    return done;
  }

  private connect(): void {
    this.retryTimer = null;
    if (this.closed) return;
    const gateway = this.gatewayUrl;
    const url = `${gateway.replace(/^http/, 'ws')}/actors/${this.actorId}/ws${this.path}`;
    // A resume past its deadline gives up when this attempt fails: bound the attempt by what is left.
    const timeoutMs =
      this.lostAt === null
        ? this.connectTimeoutMs
        : Math.max(1, Math.min(this.connectTimeoutMs, this.lostAt + this.resumeWithinMs - Date.now()));
    this.log('connecting', { gateway, resume: this.token !== null });
    const ws = new WebSocket(url, SESSION_SUBPROTOCOL, { handshakeTimeout: timeoutMs });
    const attempt: Attempt = {
      ws,
      gateway,
      live: false,
      dropped: false,
      timer: setTimeout(() => this.drop(attempt, `no session within ${timeoutMs} ms`), timeoutMs),
    };
    this.attempt = attempt;

    ws.on('open', () => ws.send(frameText(this.firstFrame())));
    ws.on('message', (data, isBinary) => this.onFrame(attempt, isBinary ? null : wsText(data)));
    ws.on('unexpected-response', (_request, response) => {
      // An HTTP answer instead of the upgrade (404 no such actor, 400, 503...): its JSON error says why.
      let body = '';
      response.on('data', (chunk: Buffer) => (body += body.length < 4096 ? chunk.toString('utf8') : ''));
      response.on('error', () => ws.terminate());
      response.on('end', () => {
        attempt.refusal = { status: response.statusCode ?? 0, message: refusalMessage(body) };
        ws.terminate();
      });
    });
    ws.on('error', (err) => (attempt.error = err.message));
    ws.on('close', (code, reason) => this.onClose(attempt, code, reason.toString('utf8')));
  }

  private firstFrame(): ClientSessionFrame {
    if (this.token === null) return { t: 'open' };
    // The resume acknowledges every frame delivered: the gateway resends from the one after.
    this.seqAcked = this.seq;
    return { t: 'resume', session: this.token, seq: this.seq, index: this.indexAcked };
  }

  private onFrame(attempt: Attempt, text: string | null): void {
    if (attempt !== this.attempt || attempt.dropped) return;
    const parsed = text === null ? null : parseGatewaySessionFrame(text);
    if (!parsed?.ok) return this.protocolError(parsed ? parsed.error : 'binary frame');
    const frame = parsed.message;
    if (frame.t === 'session') {
      if (attempt.live) return this.protocolError('a second session frame');
      return this.onSession(attempt, frame);
    }
    if (!attempt.live) return this.protocolError(`a ${frame.t} frame before the session frame`);
    if (frame.t === 'msg') return this.onActorFrame(attempt, frame);
    this.onAck(frame.index);
  }

  private onSession(attempt: Attempt, frame: Extract<GatewaySessionFrame, { t: 'session' }>): void {
    // The gateway cannot hold messages never sent, nor forget ones it acknowledged (they are gone here).
    if (frame.index > this.index) return this.protocolError(`session index ${frame.index}: only ${this.index} sent`);
    if (frame.index < this.indexAcked)
      return this.protocolError(`session index ${frame.index}: ${this.indexAcked} were acknowledged`);
    if (frame.seq > this.seq) return this.protocolError(`session seq ${frame.seq}: only ${this.seq} received`);
    clearTimeout(attempt.timer);
    attempt.live = true;
    this.token = frame.session;
    this.lostAt = null;
    this.backoff.reset();
    this.startPinging(attempt);
    if (this.opening) {
      this.log('session', { gateway: attempt.gateway });
      this.opening.resolve();
      this.opening = null;
      return;
    }
    this.onAck(frame.index);
    for (const message of this.outbox) attempt.ws.send(message.frame);
    this.log('resumed', { gateway: attempt.gateway, seq: this.seq, resent: this.outbox.length });
    this.emit('resumed', attempt.gateway);
  }

  private onActorFrame(attempt: Attempt, frame: Extract<GatewaySessionFrame, { t: 'msg' }>): void {
    if (frame.seq <= this.seq) return; // a resend of what was delivered already
    if (frame.seq > this.seq + 1) {
      // The gateway lost frames it promised to deliver: a resume asks again from the last seen.
      if (++this.gapsInARow >= MAX_GAPS_IN_A_ROW)
        return this.protocolError(`the gateway skipped frames ${MAX_GAPS_IN_A_ROW} times in a row`);
      return this.drop(attempt, `seq ${frame.seq} after ${this.seq}`);
    }
    this.seq = frame.seq;
    this.gapsInARow = 0;
    this.scheduleAck();
    this.deliver(frame.binary ? Buffer.from(frame.data, 'base64') : frame.data);
  }

  /**
   * Frames that come with the session (in the same read) arrive before `open` has resolved, so
   * before the application can listen: they wait for the first `message` listener.
   */
  private deliver(data: string | Buffer): void {
    if (this.listenerCount('message') > 0 && this.unheard.length === 0) this.emit('message', data);
    else this.unheard.push(data);
  }

  private flushUnheard(): void {
    while (this.unheard.length > 0 && this.listenerCount('message') > 0) this.emit('message', this.unheard.shift()!);
  }

  /** The gateway holds every own message up to `index`: they need no resending. */
  private onAck(index: number): void {
    if (index > this.index) return this.protocolError(`ack of message ${index}: only ${this.index} sent`);
    if (index <= this.indexAcked) return;
    this.indexAcked = index;
    const kept = this.outbox.findIndex((message) => message.index > index);
    this.outbox.splice(0, kept === -1 ? this.outbox.length : kept);
  }

  /** One `ack` (the highest `seq`) for every frame that arrived within ACK_BATCH_MS. */
  private scheduleAck(): void {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      const attempt = this.attempt;
      if (!attempt?.live || attempt.dropped || this.seq <= this.seqAcked) return;
      this.seqAcked = this.seq;
      attempt.ws.send(frameText({ t: 'ack', seq: this.seq }));
    }, ACK_BATCH_MS);
  }

  /** A connection whose pings go unanswered for two intervals is dead, even if TCP has not said so. */
  private startPinging(attempt: Attempt): void {
    this.stopPinging();
    if (this.pingIntervalMs === 0) return;
    let answered = true;
    attempt.ws.on('pong', () => (answered = true));
    this.pingTimer = setInterval(() => {
      if (!answered) return this.drop(attempt, `no pong within ${this.pingIntervalMs} ms`);
      answered = false;
      attempt.ws.ping();
    }, this.pingIntervalMs);
    this.pingTimer.unref();
  }

  private stopPinging(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  /** Gives up on this socket; its close (1006) resumes the session on the next gateway. */
  private drop(attempt: Attempt, why: string): void {
    if (attempt.dropped) return;
    this.log('dropping socket', { gateway: attempt.gateway, why });
    attempt.dropped = true;
    attempt.error = why;
    attempt.ws.terminate();
  }

  private onClose(attempt: Attempt, code: number, reason: string): void {
    clearTimeout(attempt.timer);
    if (attempt !== this.attempt || this.closed) return;
    this.attempt = null;
    this.stopPinging();
    const why = reason || attempt.error || '';
    const refusal = attempt.refusal;
    if (refusal) {
      // 5xx (and 408, 429): the gateway may serve the next attempt; any other 4xx will not change.
      const transient = refusal.status >= 500 || refusal.status === 408 || refusal.status === 429;
      const what = `the gateway refused the upgrade: HTTP ${refusal.status}${refusal.message ? ` ${refusal.message}` : ''}`;
      return transient ? this.retry(attempt, 1006, what) : this.finish(1006, what);
    }
    if (!RESUME_ON.has(code)) return this.finish(code, why);
    this.retry(attempt, code, why);
  }

  /** The socket closed in a way another socket may repair: the next gateway, after a short backoff. */
  private retry(attempt: Attempt, code: number, reason: string): void {
    if (this.opening) {
      // No session yet: each gateway once, at once; the last failure is the answer.
      if (++this.opening.failures >= this.gateways.length) return this.finish(code, reason);
      this.gatewayIndex = (this.gatewayIndex + 1) % this.gateways.length;
      this.log('connect failed', { gateway: attempt.gateway, code, reason, next: this.gatewayUrl });
      return this.connect();
    }
    const now = Date.now();
    this.lostAt ??= now;
    const left = this.lostAt + this.resumeWithinMs - now;
    if (left <= 0) return this.finish(code, closeReason(`not resumed within ${this.resumeWithinMs} ms: ${reason}`));
    this.gatewayIndex = (this.gatewayIndex + 1) % this.gateways.length;
    const delay = Math.min(this.backoff.next(), left);
    this.log('socket lost; resuming', { gateway: attempt.gateway, code, reason, next: this.gatewayUrl, delay });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private protocolError(error: string): void {
    this.log('protocol error', { error });
    this.finish(ClientCloseCode.SessionProtocolError, closeReason(error));
  }

  /**
   * Closes for good, once: stops every timer, closes the socket with `code` if it is open (1000
   * or SessionProtocolError; the gateway's own close codes arrive with the socket already closed),
   * fails a pending `open`, and emits `close` once the socket is gone, so that a process may exit
   * on it without cutting its close frame.
   */
  private finish(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const timer of [this.retryTimer, this.ackTimer]) if (timer) clearTimeout(timer);
    this.stopPinging();
    this.log('closed', { code, reason });
    if (this.opening) {
      const detail = `${code}${reason ? ` (${reason})` : ''}`;
      this.opening.reject(new SessionClosedError(`no session on ${this.gatewayUrl}: closed ${detail}`, code, reason));
      this.opening = null;
    }
    const attempt = this.attempt;
    this.attempt = null;
    const ws = attempt?.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) {
      this.emit('close', code, reason);
      return;
    }
    ws.once('close', () => this.emit('close', code, reason));
    if (ws.readyState === WebSocket.OPEN) {
      ws.close(code, reason);
      setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
    } else ws.terminate();
  }
}

function frameText(frame: ClientSessionFrame): string {
  return JSON.stringify(frame);
}

/** The `{error: {message}}` of a refused upgrade (DESIGN §6), else the body's start. */
function refusalMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { message?: unknown } };
    if (typeof parsed.error?.message === 'string') return parsed.error.message;
  } catch {
    // not JSON: the text itself says what it can
  }
  return body.slice(0, 200);
}

function validGateways(gateways: unknown): string[] {
  if (!Array.isArray(gateways) || gateways.length === 0)
    throw new Error('ResumableSocket: gateways: give at least one gateway URL, e.g. http://127.0.0.1:6420');
  const urls = gateways.map((raw: unknown) => {
    const url = typeof raw === 'string' && URL.canParse(raw) ? new URL(raw) : null;
    if (url?.protocol !== 'http:' && url?.protocol !== 'https:')
      throw new Error(
        `ResumableSocket: gateways: ${JSON.stringify(raw)} is not an http(s) URL, e.g. http://127.0.0.1:6420`,
      );
    return (raw as string).replace(/\/+$/, '');
  });
  return [...new Set(urls)];
}

function validActorId(actorId: unknown): string {
  if (typeof actorId !== 'string' || !z.uuid().safeParse(actorId).success)
    throw new Error(`ResumableSocket: actorId: ${JSON.stringify(actorId)} is not a UUID`);
  return actorId;
}

function validPath(path: unknown): string {
  if (typeof path !== 'string' || (path !== '' && !/^[/?]/.test(path)))
    throw new Error(`ResumableSocket: path: ${JSON.stringify(path)} must be empty or start with / or ?`);
  return path;
}

function validDuration(name: string, ms: unknown, zeroAllowed = false): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || (ms === 0 && !zeroAllowed))
    throw new Error(`ResumableSocket: ${name}: ${String(ms)} is not a ${zeroAllowed ? '' : 'positive '}number of ms`);
  return ms;
}
