/**
 * One generation of one actor hosted by this runner: loads its state, restores its hibernating
 * connections, runs its handlers, tracks idleness for sleep, keeps its alarm, and reports its
 * lifecycle as events.
 *
 * Handlers (requests, messages, connects, disconnects, alarms, stop) run one at a time through
 * one queue, like an input gate: what a handler changed is persisted before the next one starts,
 * so a message's effects and its index always become durable together. And like an output gate,
 * what a handler sends to clients leaves only once that write is durable: no client ever sees
 * an effect that a crash could undo and a replay repeat.
 */
import type { Logger } from '../log.js';
import { ClientCloseCode } from '../protocol/client-close-codes.js';
import type {
  ActorEvent,
  GatewayTunnelMessage,
  KvEntry,
  KvOp,
  RunnerToGateway,
  RunnerTunnelMessage,
  StartActorCommand,
  StopReason,
  TunnelMessage,
} from '../protocol/runner-protocol.js';
import {
  ActorConnection,
  CONNECTION_PREFIX,
  connectionKey,
  parseRecord,
  reconcile,
  type ConnectionHost,
  type ConnectionRecord,
} from './connections.js';
import type { ActorContext, ActorKv, AnyActorDefinition } from './define-actor.js';
import { Fenced } from '../errors.js';

/** Test hooks, off unless a test passes them to `createRunner`. */
export interface RunnerFaults {
  /** Called after a client message's effects and index are durable, before it is acknowledged. */
  afterPersistBeforeAck?: (message: { actorId: string; requestId: string; index: number; data: string }) => void;
}

export interface InstanceHost {
  emit(actorId: string, generation: number, event: ActorEvent): void;
  kv(actorId: string, generation: number, op: KvOp): Promise<KvEntry[]>;
  /** A frame for the gateway (WebSocket traffic); dropped if disconnected. */
  send(frame: RunnerToGateway): void;
  /** The instance ended on its own (crash, fenced); the runner forgets it. */
  ended(instance: ActorInstance): void;
  defaultSleepAfterMs: number;
  faults: RunnerFaults | undefined;
  log: Logger;
}

export interface HttpResult {
  status: number;
  headers: Record<string, string>;
  body: string | null;
}

type Message<K extends GatewayTunnelMessage['kind']> = TunnelMessage<GatewayTunnelMessage, K>;
type Phase = 'starting' | 'running' | 'stopping' | 'ended';

const STATE_KEY = '__dormouse/state';
const ALARM_KEY = '__dormouse/alarm';
const RESERVED_PREFIX = '__dormouse/';

export class ActorInstance {
  readonly actorId: string;
  readonly generation: number;
  private phase: Phase = 'starting';
  private readonly ctx: ActorContext;
  private savedState = 'null';
  private readonly connections = new Map<string, ActorConnection>();
  /** Records to delete with the next write (connections that ended). */
  private readonly deletions = new Set<string>();
  /** Requests and non-hibernatable connections in progress keep the actor awake. */
  private busy = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  private alarmTimer: NodeJS.Timeout | null = null;
  private intentSent = false;
  private gate: Promise<unknown> = Promise.resolve();
  private inHandler = false;
  /** Frames to clients sent by the running handler, released after its write. */
  private held: RunnerToGateway[] = [];
  private readonly log: Logger;

  constructor(
    private readonly command: StartActorCommand,
    private readonly definition: AnyActorDefinition,
    private readonly host: InstanceHost,
  ) {
    this.actorId = command.actorId;
    this.generation = command.generation;
    this.log = host.log.child({ actorId: command.actorId, generation: command.generation, actor: command.name });
    this.ctx = this.makeContext();
  }

  /** Tells the gateway something about one of this generation's requests. */
  private tunnel(requestId: string, message: RunnerTunnelMessage): RunnerToGateway {
    return { type: 'tunnel', requestId, actorId: this.actorId, generation: this.generation, message };
  }

  /** Taking new requests and messages (work queued before a stop still finishes). */
  get isRunning(): boolean {
    return this.phase === 'running';
  }

  // --- Lifecycle ----------------------------------------------------------------------------

  /**
   * Loads state and connection records, reconciles them with the start's snapshot (H5), runs
   * onStart, persists, tells the gateway what it restored, and only then reports running.
   */
  async start(): Promise<void> {
    try {
      const [state, alarm] = await this.kvGet([STATE_KEY, ALARM_KEY]);
      this.ctx.state = state
        ? JSON.parse(state.toString())
        : (this.definition.createState?.(this.command.input) ?? null);
      this.savedState = JSON.stringify(this.ctx.state);

      const records = (await this.host.kv(this.actorId, this.generation, { kind: 'list', prefix: CONNECTION_PREFIX }))
        .map((e) => (e.value === null ? null : parseRecord(Buffer.from(e.value, 'base64'))))
        .filter((r): r is ConnectionRecord => r !== null);
      const { restore, unknown, lost } = reconcile(this.command.hibernatingRequests, records);
      for (const record of restore)
        this.connections.set(record.requestId, new ActorConnection(record, true, this.connectionHost()));
      for (const ref of unknown) {
        this.host.send(
          this.tunnel(ref.requestId, {
            kind: 'wsClose',
            code: ClientCloseCode.UnknownConnection,
            reason: 'the actor has no record of this connection',
          }),
        );
      }

      const reportRestored = () =>
        this.host.send({
          type: 'wsRestored',
          actorId: this.actorId,
          generation: this.generation,
          requests: restore.map((r) => ({ requestId: r.requestId, lastIndex: r.lastIndex })),
        });
      // The restore report goes before anything onStart sent: the gateway must have the
      // connections attached to this runner when their first messages arrive.
      await this.runHandler(async () => {
        await this.definition.onStart?.(this.ctx);
        for (const record of lost) {
          this.deletions.add(connectionKey(record.requestId));
          const conn = new ActorConnection(record, true, this.connectionHost());
          conn.closed = true;
          await this.definition.onDisconnect?.(this.ctx, conn, {
            code: 1006,
            reason: 'lost while the actor was stopped',
          });
        }
      }, reportRestored);
      if (this.phase !== 'starting') return; // crashed or fenced meanwhile
      this.phase = 'running';
      this.emit({ kind: 'running' });
      this.log.info(
        { reason: this.command.reason, restored: restore.length, lost: lost.length, unknown: unknown.length },
        'actor running',
      );
      if (alarm) this.scheduleAlarm(Number(alarm.toString()));
      this.touch();
    } catch (err) {
      this.fail(err);
    }
  }

  /**
   * A requested stop: after the work already queued, drop non-hibernatable connections, run
   * onStop, persist, report stopped. A start still in progress is abandoned instead: its onStart
   * may still run, so neither onStop nor a save would be safe.
   */
  async stop(reason: StopReason): Promise<void> {
    if (this.phase === 'ended' || this.phase === 'stopping') return;
    if (this.phase === 'starting') {
      this.emit({ kind: 'stopped', code: 'ok' });
      this.end('stopped before it finished starting');
      return;
    }
    this.phase = 'stopping';
    this.clearTimers();
    try {
      await this.serially(async () => {
        for (const conn of [...this.connections.values()].filter((c) => !c.hibernatable)) {
          this.connections.delete(conn.id);
          conn.closed = true;
          await this.definition.onDisconnect?.(this.ctx, conn, { code: 1001, reason: 'actor stopping' });
        }
        await this.definition.onStop?.(this.ctx);
      });
    } catch (err) {
      if (err instanceof Fenced) return this.end('fenced while stopping');
      this.log.error({ err }, 'onStop failed');
    }
    this.emit({ kind: 'stopped', code: 'ok' });
    this.end();
    this.log.info({ reason }, 'actor stopped');
  }

  /** The registry moved on from this generation: stop without a word to the workflow. */
  dispose(why: string): void {
    if (this.phase === 'ended') return;
    this.end(why);
  }

  // --- HTTP ---------------------------------------------------------------------------------

  async handleHttp(message: Message<'httpRequest'>): Promise<HttpResult> {
    this.busy++;
    this.touch();
    try {
      return await this.serially(async () => {
        if (!this.definition.onRequest)
          return { status: 404, headers: { 'content-type': 'text/plain' }, body: b64('actor has no request handler') };
        const request = new Request(`http://actor${message.path}`, {
          method: message.method,
          headers: message.headers,
          body:
            message.body === null || message.method === 'GET' || message.method === 'HEAD'
              ? null
              : Buffer.from(message.body, 'base64'),
        });
        let response: Response;
        try {
          response = await this.definition.onRequest(this.ctx, request);
        } catch (err) {
          if (err instanceof Fenced) throw err;
          this.log.warn({ err }, 'request handler failed');
          return {
            status: 500,
            headers: { 'content-type': 'text/plain' },
            body: b64(err instanceof Error ? err.message : 'internal error'),
          };
        }
        const body = Buffer.from(await response.arrayBuffer());
        return {
          status: response.status,
          headers: Object.fromEntries(response.headers),
          body: body.length ? body.toString('base64') : null,
        };
      });
    } catch (err) {
      this.fail(err);
      return {
        status: 503,
        headers: { 'content-type': 'text/plain' },
        body: b64('actor stopped while handling the request'),
      };
    } finally {
      this.busy--;
      this.touch();
    }
  }

  // --- WebSockets ---------------------------------------------------------------------------

  /** A new connection, or the gateway offering one the snapshot missed (H8). */
  async openConnection(requestId: string, message: Message<'wsOpen'>): Promise<void> {
    await this.guarded(async () => {
      const known = this.connections.get(requestId);
      if (known) {
        this.host.send(this.tunnel(known.id, { kind: 'wsOpenAck', hibernatable: known.hibernatable }));
        return;
      }
      if (!this.definition.onMessage) {
        this.host.send(
          this.tunnel(requestId, {
            kind: 'wsClose',
            code: ClientCloseCode.Rejected,
            reason: 'this actor accepts no WebSockets',
          }),
        );
        return;
      }
      const request = { path: message.path, headers: message.headers };
      const choice = this.definition.hibernatable;
      const hibernatable = typeof choice === 'function' ? choice(this.ctx, request) : choice === true;
      const record: ConnectionRecord = {
        v: 1,
        requestId,
        gatewayId: message.gatewayId,
        lastIndex: message.lastIndex,
        ...request,
        headers: { ...message.headers },
        attachment: null,
      };
      const conn = new ActorConnection(record, hibernatable, this.connectionHost());
      conn.dirty = hibernatable;
      this.connections.set(conn.id, conn);
      try {
        await this.definition.onConnect?.(this.ctx, conn);
      } catch (err) {
        this.connections.delete(conn.id);
        this.deletions.delete(connectionKey(conn.id));
        this.host.send(
          this.tunnel(conn.id, {
            kind: 'wsClose',
            code: ClientCloseCode.Rejected,
            reason: err instanceof Error ? err.message.slice(0, 120) : 'rejected',
          }),
        );
        return;
      }
      if (conn.closed) return; // refused inside onConnect; the close is on its way
      if (!hibernatable) this.busy++;
      // H1 on the actor side: the record is durable before the gateway hears "accepted".
      await this.persist();
      this.host.send(this.tunnel(conn.id, { kind: 'wsOpenAck', hibernatable }));
      this.log.debug({ requestId: conn.id, hibernatable, offer: message.offer }, 'connection accepted');
    });
  }

  /**
   * H6: in order, duplicates dropped, a gap refused, and acknowledged only after the handler's
   * write (its effects together with the new index) is durable.
   */
  async takeMessage(requestId: string, message: Message<'wsMessage'>): Promise<void> {
    let processed: ActorConnection | null = null;
    await this.guarded(async () => {
      const conn = this.connections.get(requestId);
      if (!conn) {
        this.host.send(
          this.tunnel(requestId, {
            kind: 'wsClose',
            code: ClientCloseCode.UnknownConnection,
            reason: 'the actor has no such connection',
          }),
        );
        return;
      }
      if (message.index <= conn.lastIndex) {
        this.host.send(this.tunnel(conn.id, { kind: 'wsAck', index: message.index }));
        return;
      }
      if (message.index !== conn.lastIndex + 1) {
        conn.close(ClientCloseCode.MessageGap, `expected message ${conn.lastIndex + 1}, got ${message.index}`);
        return;
      }
      const data = message.binary ? Buffer.from(message.data, 'base64') : message.data;
      try {
        await this.definition.onMessage?.(this.ctx, conn, data);
      } catch (err) {
        if (err instanceof Fenced) throw err;
        // A handler error does not make the message undelivered: it is processed, and not retried.
        this.log.warn({ err, requestId: conn.id, index: message.index }, 'message handler failed');
      }
      conn.record.lastIndex = message.index;
      conn.dirty = conn.hibernatable;
      processed = conn;
    });
    // Here the handler's write is durable (runHandler persisted it) or the actor has crashed.
    const conn = processed as ActorConnection | null;
    if (!conn || this.phase === 'ended') return;
    this.host.faults?.afterPersistBeforeAck?.({
      actorId: this.actorId,
      requestId: conn.id,
      index: message.index,
      data: message.data,
    });
    this.host.send(this.tunnel(conn.id, { kind: 'wsAck', index: message.index }));
  }

  /** The client closed (or the gateway closed it): the record goes, onDisconnect runs, once. */
  async clientClosed(requestId: string, message: Message<'wsClose'>): Promise<void> {
    await this.guarded(async () => {
      const conn = this.connections.get(requestId);
      if (!conn) return;
      this.connections.delete(conn.id);
      conn.closed = true;
      if (!conn.hibernatable) this.busy--;
      this.deletions.add(connectionKey(conn.id));
      await this.definition.onDisconnect?.(this.ctx, conn, { code: message.code, reason: message.reason });
      await this.persist();
      this.touch();
    });
  }

  private connectionHost(): ConnectionHost {
    return {
      send: (conn, data) => {
        const binary = typeof data !== 'string';
        const frame = this.tunnel(conn.id, {
          kind: 'wsMessage',
          data: binary ? Buffer.from(data).toString('base64') : data,
          binary,
        });
        if (this.inHandler) this.held.push(frame);
        else this.host.send(frame);
      },
      close: (conn, code, reason) => {
        this.connections.delete(conn.id);
        if (!conn.hibernatable) this.busy--;
        this.deletions.add(connectionKey(conn.id));
        // The record goes before the gateway hears of the close: a crash in between leaves a
        // request without a record, which the next start closes (L\M), never a double disconnect.
        const persistThenClose = async () => {
          await this.persist();
          this.host.send(this.tunnel(conn.id, { kind: 'wsClose', code, reason }));
        };
        // Queued: inside a handler it runs after that handler's own write.
        void this.guarded(persistThenClose);
        this.touch();
      },
      changed: () => {
        if (!this.inHandler) void this.guarded(() => this.persist());
      },
    };
  }

  // --- Persistence and the handler queue ------------------------------------------------------

  /** Runs `fn` after everything queued before it. */
  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.gate.then(() => this.runHandler(fn));
    this.gate = run.catch(() => undefined);
    return run;
  }

  /** Queued work whose failure is a crash of the actor (a fenced one ends it quietly). */
  private guarded(fn: () => Promise<void>): Promise<void> {
    return this.serially(fn).catch((err: unknown) => this.fail(err));
  }

  /** A handler runs, whatever it changed is persisted in one write, then what it sent is released. */
  private async runHandler<T>(fn: () => Promise<T>, beforeRelease?: () => void): Promise<T> {
    this.inHandler = true;
    try {
      const result = await fn();
      await this.persist();
      beforeRelease?.();
      for (const frame of this.held) this.host.send(frame);
      return result;
    } finally {
      this.held = [];
      this.inHandler = false;
    }
  }

  /** One KV write: the state if it changed, dirty connection records, ended ones deleted. */
  private async persist(): Promise<void> {
    const put: { key: string; value: string }[] = [];
    const state = JSON.stringify(this.ctx.state);
    if (state !== this.savedState) put.push({ key: STATE_KEY, value: b64(state) });
    const dirty = [...this.connections.values()].filter((c) => c.dirty && c.hibernatable);
    for (const conn of dirty) put.push({ key: connectionKey(conn.id), value: b64(JSON.stringify(conn.record)) });
    const deletions = [...this.deletions];
    if (put.length === 0 && deletions.length === 0) return;
    await this.host.kv(this.actorId, this.generation, { kind: 'write', put, delete: deletions });
    this.savedState = state;
    for (const conn of dirty) conn.dirty = false;
    for (const key of deletions) this.deletions.delete(key);
  }

  // --- Context ------------------------------------------------------------------------------

  private makeContext(): ActorContext {
    const write = (put: { key: string; value: string }[], del: string[]) =>
      this.host.kv(this.actorId, this.generation, { kind: 'write', put, delete: del }).then(() => undefined);
    const kv: ActorKv = {
      get: async (key) => (await this.kvGet([userKey(key)]))[0] ?? null,
      put: (key, value) => write([{ key: userKey(key), value: Buffer.from(value).toString('base64') }], []),
      delete: (key) => write([], [userKey(key)]),
      list: async (prefix) => {
        const entries = await this.host.kv(this.actorId, this.generation, {
          kind: 'list',
          prefix: userKey(prefix, true),
        });
        return entries
          .filter((e) => !e.key.startsWith(RESERVED_PREFIX))
          .map((e) => ({ key: e.key, value: Buffer.from(e.value ?? '', 'base64') }));
      },
    };
    return {
      actorId: this.command.actorId,
      name: this.command.name,
      key: this.command.key,
      input: this.command.input,
      generation: this.command.generation,
      state: null,
      saveState: () => this.persist(),
      kv,
      sleep: () => this.requestIntent('sleep'),
      destroy: () => this.requestIntent('stop'),
      crash: (error) => this.fail(error),
      setAlarm: (ts) => this.setAlarm(ts),
      connections: () => [...this.connections.values()],
      broadcast: (data) => {
        for (const conn of this.connections.values()) conn.send(data);
      },
      log: this.log,
    };
  }

  private async kvGet(keys: string[]): Promise<(Buffer | null)[]> {
    const entries = await this.host.kv(this.actorId, this.generation, { kind: 'get', keys });
    return entries.map((e) => (e.value === null ? null : Buffer.from(e.value, 'base64')));
  }

  // --- Sleep, alarms, crashes ---------------------------------------------------------------

  private requestIntent(intent: 'sleep' | 'stop'): void {
    if (this.phase !== 'running' || this.intentSent) return;
    this.intentSent = true;
    this.emit({ kind: 'intent', intent });
    this.log.info({ intent }, 'actor asked to stop');
  }

  /**
   * Activity resets the idle clock. With no request in flight and no non-hibernatable
   * connection open, the actor sleeps after the idle time; hibernatable connections do not
   * keep it awake.
   */
  private touch(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (this.phase !== 'running' || this.busy > 0) return;
    this.idleTimer = setTimeout(() => this.requestIntent('sleep'), this.sleepAfterMs());
  }

  private sleepAfterMs(): number {
    const input = this.command.input as { sleepAfterMs?: unknown } | null;
    const fromInput = input && typeof input === 'object' ? input.sleepAfterMs : undefined;
    if (typeof fromInput === 'number' && Number.isFinite(fromInput) && fromInput > 0) return fromInput;
    return this.definition.sleepAfterMs ?? this.host.defaultSleepAfterMs;
  }

  private async setAlarm(ts: number | null): Promise<void> {
    if (ts === null) await this.host.kv(this.actorId, this.generation, { kind: 'write', put: [], delete: [ALARM_KEY] });
    else
      await this.host.kv(this.actorId, this.generation, {
        kind: 'write',
        put: [{ key: ALARM_KEY, value: b64(String(ts)) }],
        delete: [],
      });
    this.emit({ kind: 'setAlarm', alarmTs: ts });
    this.scheduleAlarm(ts);
  }

  private scheduleAlarm(ts: number | null): void {
    if (this.alarmTimer) clearTimeout(this.alarmTimer);
    this.alarmTimer = null;
    if (ts === null || this.phase !== 'running') return;
    // setTimeout caps at ~24.8 days; a later alarm is re-armed when the actor next starts.
    const delay = Math.min(Math.max(ts - Date.now(), 0), 2 ** 31 - 1);
    this.alarmTimer = setTimeout(() => void this.fireAlarm(), delay);
  }

  private async fireAlarm(): Promise<void> {
    this.alarmTimer = null;
    if (this.phase !== 'running') return;
    this.busy++;
    try {
      await this.setAlarm(null);
      await this.serially(async () => {
        await this.definition.onAlarm?.(this.ctx);
      });
    } catch (err) {
      this.fail(err);
    } finally {
      this.busy--;
      this.touch();
    }
  }

  /** A crash: report it and end this generation; the workflow applies the crash policy. */
  private fail(err: unknown): void {
    if (this.phase === 'ended') return;
    if (err instanceof Fenced) return this.end('fenced');
    const message = err instanceof Error ? err.message : String(err);
    this.log.error({ err }, 'actor crashed');
    this.emit({ kind: 'stopped', code: 'error', message: message.slice(0, 4096) });
    this.end();
  }

  private end(why?: string): void {
    if (why) this.log.warn({ why }, 'actor instance dropped');
    this.phase = 'ended';
    this.clearTimers();
    this.host.ended(this);
  }

  private clearTimers(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.alarmTimer) clearTimeout(this.alarmTimer);
    this.idleTimer = null;
    this.alarmTimer = null;
  }

  private emit(event: ActorEvent): void {
    this.host.emit(this.actorId, this.generation, event);
  }
}

function b64(text: string): string {
  return Buffer.from(text).toString('base64');
}

function userKey(key: string, prefix = false): string {
  if (key.startsWith(RESERVED_PREFIX)) throw new Error(`keys starting with ${RESERVED_PREFIX} are reserved`);
  if (!prefix && key.length === 0) throw new Error('kv keys must not be empty');
  return key;
}
