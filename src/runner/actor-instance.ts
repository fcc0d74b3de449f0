/**
 * One generation of one actor hosted by this runner: loads its state, restores its hibernating
 * connections, runs its handlers, tracks idleness for rest and sleep, keeps its alarm, and
 * reports its lifecycle as events.
 *
 * Resting in place (DESIGN §4.1): once idle and quiet, the generation drops its instance (the
 * context with its state, the connection objects) and keeps only connection records; the next
 * piece of work rebuilds it from the persisted state before running, in the same queue.
 *
 * Handlers (requests, messages, connects, disconnects, alarms, stop) run one at a time through
 * one queue, like an input gate: what a handler changed is persisted before the next one starts,
 * so a message's effects and its index always become durable together. What a handler sends to
 * clients is numbered per connection and written in that same transaction, into the outbox (H9),
 * and leaves only once that write is durable: no client ever sees an effect that a crash could
 * undo and a replay repeat. The outbox keeps each frame until the gateway acknowledges it; a
 * reconnect, an offer or the next generation's start sends again what is unacknowledged.
 */
import type { Logger } from '../log.js';
import { ClientCloseCode } from '../protocol/client-close-codes.js';
import {
  DEFAULT_OUTBOX_LIMITS,
  type ActorEvent,
  type GatewayTunnelMessage,
  type KvEntry,
  type KvOp,
  type RunnerToGateway,
  type RunnerTunnelMessage,
  type StartActorCommand,
  type StopReason,
  type TunnelMessage,
} from '../protocol/runner-protocol.js';
import {
  ActorConnection,
  CONNECTION_PREFIX,
  connectionKey,
  parseRecord,
  persistedHeaders,
  reconcile,
  type ConnectionHost,
  type ConnectionRecord,
} from './connections.js';
import type { ActorContext, ActorKv, AnyActorDefinition } from './define-actor.js';
import type { RestCache } from './rest-cache.js';
import { Fenced, NotHosted } from '../errors.js';

/** Test hooks, off unless a test passes them to `createRunner`. */
export interface RunnerFaults {
  /** Called after a client message's effects and index are durable, before it is acknowledged. */
  afterPersistBeforeAck?: (message: { actorId: string; requestId: string; index: number; data: string }) => void;
  /** Given, once, a way to drop the runner's gateway socket (it reconnects, like after a network fault). */
  onLink?: (drop: () => void) => void;
  /** Called after a write that holds outbound frames is durable, before any of them is sent. */
  afterPersistBeforeSend?: (frames: { actorId: string; requestId: string; seq: number; data: string }[]) => void;
}

export interface InstanceHost {
  emit(actorId: string, generation: number, event: ActorEvent): void;
  kv(actorId: string, generation: number, op: KvOp): Promise<KvEntry[]>;
  /** A frame for the gateway (WebSocket traffic); false, and dropped, if disconnected. */
  send(frame: RunnerToGateway): boolean;
  /** The instance ended on its own (crash, fenced); the runner forgets it. */
  ended(instance: ActorInstance): void;
  /** Idle times when neither the actor's type nor its input sets them. */
  idle: IdleTimes;
  /** Where a resting actor's state may wait for its wake (within the runner's budget). */
  restCache: RestCache;
  faults: RunnerFaults | undefined;
  log: Logger;
}

export interface IdleTimes {
  restAfterMs: number;
  sleepAfterMs: number;
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
/** The outbox (H9): one key per unacknowledged frame, `__dormouse/out/<requestId>/<seq, 16 digits>`. */
const OUT_PREFIX = '__dormouse/out/';
/** Acknowledged frames are deleted with the next write, or after this long if none comes. */
const TRIM_DELAY_MS = 250;
/**
 * How long after going to rest, and after waking, the runner reports it (reportRestChange). A
 * rest shorter than this is never reported: an actor that wakes about when it rests costs its
 * workflow nothing. A wake is reported soon, but not during it.
 */
const REPORT_DELAY_MS = { resting: 1_000, active: 100 } as const;
/** setTimeout's longest delay (~24.8 days); a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Deletes a connection's whole outbox (no seq reaches it). */
const ALL_FRAMES = Number.MAX_SAFE_INTEGER;

/** An actor→client frame not yet acknowledged by the gateway. */
interface OutFrame {
  requestId: string;
  seq: number;
  data: string;
  binary: boolean;
  bytes: number;
  /** Written to the outbox (hibernatable connections only; the others do not outlive the generation). */
  durable: boolean;
  /** Sent at least once (its write is durable). */
  released: boolean;
}

/** One connection's unacknowledged frames, in seq order. */
interface ConnOutbox {
  frames: OutFrame[];
  bytes: number;
  /**
   * The highest seq written to the outbox. Its key outlives its acknowledgement: it is how the
   * next host knows where the seqs are (the record is not rewritten for every frame sent).
   */
  written: number;
}

export class ActorInstance {
  readonly actorId: string;
  readonly generation: number;
  private phase: Phase = 'starting';
  /** The instance the actor's code sees; none while resting. */
  private instance: ActorContext | null;
  /** Counts the instances built; a context of an earlier one (dropped at a rest) does nothing. */
  private build = 0;
  /** The instance is dropped; `restingRecords` is all that is left of its connections. */
  private resting = false;
  private restingRecords: ConnectionRecord[] = [];
  private savedState = 'null';
  private readonly connections = new Map<string, ActorConnection>();
  /** Records to delete with the next write (connections that ended). */
  private readonly deletions = new Set<string>();
  /** Requests and non-hibernatable connections in progress keep the actor awake. */
  private busy = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  private restTimer: NodeJS.Timeout | null = null;
  /** A `resting` or `active` report waiting to go (reportRestChange). */
  private restReport: { kind: 'resting' | 'active'; timer: NodeJS.Timeout } | null = null;
  private readonly idle: IdleTimes;
  private alarmTimer: NodeJS.Timeout | null = null;
  private intentSent = false;
  private gate: Promise<unknown> = Promise.resolve();
  private inHandler = false;
  /** Per connection, the frames the gateway has not acknowledged (H9). */
  private readonly outbox = new Map<string, ConnOutbox>();
  /** Frames to write with the next persist; then to release once that write is durable. */
  private unpersisted: OutFrame[] = [];
  private releasable: OutFrame[] = [];
  /** Per connection, outbox frames up to this seq to delete with the next write. */
  private readonly trims = new Map<string, number>();
  /**
   * Closes the actor made while the runner was disconnected. Their records are gone, so without
   * them the next start would find no record and close the client with 4500, not the actor's code.
   */
  private readonly unsentCloses = new Map<string, RunnerToGateway>();
  private trimTimer: NodeJS.Timeout | null = null;
  /** `ctx.kv` puts (base64) and deletes (null) of the running handler, committed with its write. */
  private readonly kvBuffer = new Map<string, string | null>();
  private readonly outboxLimits: { frames: number; bytes: number };
  private readonly log: Logger;

  constructor(
    private readonly command: StartActorCommand,
    private readonly definition: AnyActorDefinition,
    private readonly host: InstanceHost,
  ) {
    this.actorId = command.actorId;
    this.generation = command.generation;
    this.log = host.log.child({ actorId: command.actorId, generation: command.generation, actor: command.name });
    this.instance = this.makeContext();
    this.idle = idleTimes(command.input, definition, host.idle);
    this.outboxLimits = {
      frames: definition.outboxLimits?.frames ?? DEFAULT_OUTBOX_LIMITS.frames,
      bytes: definition.outboxLimits?.bytes ?? DEFAULT_OUTBOX_LIMITS.bytes,
    };
  }

  /** The live instance's context. Work for a resting actor rebuilds it first (serially). */
  private get ctx(): ActorContext {
    if (!this.instance) throw new Error(`actor ${this.actorId} is resting: its instance must be rebuilt first`);
    return this.instance;
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
      // Everything Dormouse keeps for the actor (state, alarm, connection records, outbox) lies
      // under one prefix: one read, where three in a row cost a start two more round trips.
      const stored = new Map<string, Buffer>();
      for (const e of await this.host.kv(this.actorId, this.generation, { kind: 'list', prefix: RESERVED_PREFIX }))
        if (e.value !== null) stored.set(e.key, Buffer.from(e.value, 'base64'));
      const state = stored.get(STATE_KEY);
      const alarm = stored.get(ALARM_KEY);
      this.ctx.state = state
        ? JSON.parse(state.toString())
        : (this.definition.createState?.(this.command.input) ?? null);
      this.savedState = JSON.stringify(this.ctx.state);

      const records = [...stored]
        .filter(([key]) => key.startsWith(CONNECTION_PREFIX))
        .map(([, value]) => parseRecord(value))
        .filter((r): r is ConnectionRecord => r !== null);
      const { restore, unknown, lost } = reconcile(this.command.hibernatingRequests, records);
      for (const record of restore) this.restoreConnection(record);
      const resend = this.restoreOutbox(stored);
      for (const ref of unknown) {
        this.host.send(
          this.tunnel(ref.requestId, {
            kind: 'wsClose',
            code: ClientCloseCode.UnknownConnection,
            reason: 'the actor has no record of this connection',
          }),
        );
      }

      const reportRestored = () => {
        this.host.send({
          type: 'wsRestored',
          actorId: this.actorId,
          generation: this.generation,
          requests: restore.map((r) => ({ requestId: r.requestId, lastIndex: r.lastIndex })),
        });
        // H9: what the last host sent but the gateway never acknowledged goes again, in order,
        // before anything newer; the gateway drops the seqs it has already delivered.
        for (const frame of resend) this.sendOut(frame);
      };
      // The restore report goes before anything onStart sent: the gateway must have the
      // connections attached to this runner when their first messages arrive.
      await this.runHandler(async () => {
        await this.definition.onStart?.(this.ctx);
        for (const record of lost) {
          this.deletions.add(connectionKey(record.requestId));
          this.trims.set(record.requestId, ALL_FRAMES);
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
      // A resting actor is not rebuilt to stop: all it had is persisted, and onStop has no
      // instance to run on. (Its connections are all hibernatable: anything else keeps it awake.)
      await this.serially(async () => {
        if (this.resting) return;
        for (const conn of [...this.connections.values()].filter((c) => !c.hibernatable)) {
          this.connections.delete(conn.id);
          conn.closed = true;
          await this.definition.onDisconnect?.(this.ctx, conn, { code: 1001, reason: 'actor stopping' });
        }
        await this.definition.onStop?.(this.ctx);
      }, false);
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
        const lastSent = known.record.outSeq ?? 0;
        if (message.lastOutSeq > lastSent) {
          // A resumed session (H10) claiming frames this connection never sent: it would miss
          // the ones it does not have, numbered as if it had them.
          known.close(
            ClientCloseCode.SessionProtocolError,
            `resumed after frame ${message.lastOutSeq}, but the last frame sent was ${lastSent}`,
          );
          return;
        }
        if (known.record.gatewayId !== message.gatewayId) {
          // A session resumed on another gateway (H10): the record follows it with the next write.
          known.record.gatewayId = message.gatewayId;
          known.dirty = known.hibernatable;
        }
        this.host.send(this.tunnel(known.id, { kind: 'wsOpenAck', hibernatable: known.hibernatable }));
        // The gateway missed this start's restore report, and so the outbox resent with it.
        this.outAcked(known.id, message.lastOutSeq);
        this.resendOutbox(known.id);
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
        // An offered connection the actor had lost (M\L) is new here, but not at the gateway:
        // its frames continue after the last one the client received.
        outSeq: message.lastOutSeq,
        path: message.path,
        headers: persistedHeaders(message.headers, this.definition.persistHeaders),
        attachment: null,
      };
      const conn = new ActorConnection(record, hibernatable, this.connectionHost(), { ...message.headers });
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
    this.touch();
  }

  /**
   * H6: in order, duplicates dropped, a gap refused, and acknowledged only after the handler's
   * write (its effects together with the new index) is durable.
   */
  async takeMessage(requestId: string, message: Message<'wsMessage'>): Promise<void> {
    let processed: ActorConnection | null = null;
    let thrown: unknown = null;
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
      // The index is part of the handler's write from the start: a `saveState()` inside the
      // handler commits it with the state, never the state ahead of it.
      conn.record.lastIndex = message.index;
      conn.dirty = conn.hibernatable;
      try {
        await this.definition.onMessage?.(this.ctx, conn, data);
      } catch (err) {
        if (err instanceof Fenced) throw err;
        // The message counts as processed all the same (with what the handler did before it
        // threw): delivered again, it would throw again and crash every generation after this one.
        thrown = err;
      }
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
    // Never swallowed: the handler left its instance in a state nobody planned for.
    if (thrown !== null) return this.fail(thrown);
    this.touch();
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
      this.dropOutbox(conn.id);
      await this.definition.onDisconnect?.(this.ctx, conn, { code: message.code, reason: message.reason });
      await this.persist();
      this.touch();
    });
  }

  private connectionHost(): ConnectionHost {
    return {
      send: (conn, data) => this.enqueueOut(conn, data),
      close: (conn, code, reason) => {
        this.connections.delete(conn.id);
        if (!conn.hibernatable) this.busy--;
        this.deletions.add(connectionKey(conn.id));
        this.dropOutbox(conn.id);
        // The record goes before the gateway hears of the close: a crash in between leaves a
        // request without a record, which the next start closes (L\M), never a double disconnect.
        const persistThenClose = async () => {
          await this.persist();
          const frame = this.tunnel(conn.id, { kind: 'wsClose', code, reason });
          if (!this.host.send(frame)) this.unsentCloses.set(conn.id, frame);
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

  /**
   * Runs `fn` after everything queued before it, unless the instance ended meanwhile. Work queued
   * behind a write that crashed the instance must not run: its write would commit a processed
   * index whose frames were never sent, and connection records numbered past frames that the
   * failed write took with it (the next generation would then send a gap).
   */
  private serially<T>(fn: () => Promise<T>, wake = true): Promise<T> {
    const run = this.gate.then(async () => {
      if (this.phase === 'ended') throw new NotHosted(`actor ${this.actorId} generation ${this.generation} has ended`);
      if (this.resting && wake) await this.rebuild();
      return this.runHandler(fn);
    });
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
      this.release();
      return result;
    } finally {
      this.kvBuffer.clear();
      this.inHandler = false;
    }
  }

  /**
   * One KV write, one transaction: the state if it changed, dirty connection records, ended ones
   * deleted, the handler's `ctx.kv` writes, its outbound frames (H9) and the outbox trims.
   */
  private async persist(): Promise<void> {
    if (this.resting) return; // nothing runs on a dropped instance, so nothing changed
    const put: { key: string; value: string }[] = [];
    const state = JSON.stringify(this.ctx.state);
    if (state !== this.savedState) put.push({ key: STATE_KEY, value: b64(state) });
    const dirty = [...this.connections.values()].filter((c) => c.dirty && c.hibernatable);
    for (const conn of dirty) put.push({ key: connectionKey(conn.id), value: b64(JSON.stringify(conn.record)) });
    const frames = this.unpersisted;
    this.unpersisted = [];
    for (const f of frames)
      if (f.durable) put.push({ key: outKey(f.requestId, f.seq), value: b64(JSON.stringify([f.data, f.binary])) });
    const deletions = [...this.deletions];
    for (const [key, value] of this.kvBuffer) {
      if (value === null) deletions.push(key);
      else put.push({ key, value });
    }
    this.kvBuffer.clear();
    const trims = [...this.trims];
    this.trims.clear();
    if (put.length > 0 || deletions.length > 0 || trims.length > 0) {
      const trim = trims.map(([id, seq]) => ({ prefix: outPrefix(id), through: outKey(id, seq) }));
      await this.host.kv(this.actorId, this.generation, { kind: 'write', put, delete: deletions, trim });
    }
    this.savedState = state;
    for (const conn of dirty) conn.dirty = false;
    for (const key of deletions) this.deletions.delete(key);
    for (const f of frames) {
      const box = f.durable ? this.outbox.get(f.requestId) : undefined;
      if (box) box.written = Math.max(box.written, f.seq);
    }
    this.releasable.push(...frames);
  }

  // --- The outbox (H9) ------------------------------------------------------------------------

  /**
   * Numbers a frame for its connection and keeps it until the gateway acknowledges it. It is
   * written with the running handler's write (outside a handler, with a write queued now).
   */
  private enqueueOut(conn: ActorConnection, data: string | Uint8Array): void {
    if (this.phase === 'ended') return; // a dropped instance's timers: nothing it sends is written
    const binary = typeof data !== 'string';
    const payload = binary ? Buffer.from(data).toString('base64') : data;
    const bytes = binary ? data.byteLength : Buffer.byteLength(data);
    let box = this.outbox.get(conn.id);
    if (!box) this.outbox.set(conn.id, (box = { frames: [], bytes: 0, written: 0 }));
    if (box.frames.length >= this.outboxLimits.frames || box.bytes + bytes > this.outboxLimits.bytes) {
      this.log.warn(
        { requestId: conn.id, frames: box.frames.length, bytes: box.bytes },
        'outbox full: closing the connection',
      );
      return conn.close(ClientCloseCode.OutboxFull, 'too many frames not yet acknowledged by the gateway');
    }
    const seq = (conn.record.outSeq ?? 0) + 1;
    conn.record.outSeq = seq;
    const frame: OutFrame = {
      requestId: conn.id,
      seq,
      data: payload,
      binary,
      bytes,
      durable: conn.hibernatable,
      released: false,
    };
    box.frames.push(frame);
    box.bytes += bytes;
    this.unpersisted.push(frame);
    if (!this.inHandler) void this.guarded(() => Promise.resolve());
  }

  /** Sends the frames whose write is durable. */
  private release(): void {
    const frames = this.releasable;
    this.releasable = [];
    if (frames.length === 0) return;
    this.host.faults?.afterPersistBeforeSend?.(
      frames.map((f) => ({ actorId: this.actorId, requestId: f.requestId, seq: f.seq, data: f.data })),
    );
    for (const frame of frames) {
      frame.released = true;
      this.sendOut(frame);
    }
  }

  private sendOut(frame: OutFrame): void {
    const { seq, data, binary } = frame;
    this.host.send(this.tunnel(frame.requestId, { kind: 'wsMessage', seq, data, binary }));
  }

  /** The gateway handed frames up to `seq` to the client: they leave the outbox with a later write. */
  outAcked(requestId: string, seq: number): void {
    const box = this.outbox.get(requestId);
    if (!box) return;
    let through = 0;
    while (box.frames[0]?.released && box.frames[0].seq <= seq) {
      const frame = box.frames.shift()!;
      box.bytes -= frame.bytes;
      if (frame.durable) through = frame.seq;
    }
    // The newest written frame stays: it tells the next host where the seqs are.
    through = Math.min(through, box.written - 1);
    if (through <= 0) return;
    this.trims.set(requestId, Math.max(this.trims.get(requestId) ?? 0, through));
    this.scheduleTrim();
  }

  /** Acknowledged frames ride on the next handler's write; if none comes soon, one write of their own. */
  private scheduleTrim(): void {
    if (this.trimTimer || this.phase === 'ended') return;
    this.trimTimer = setTimeout(() => {
      this.trimTimer = null;
      if (this.trims.size > 0 && this.phase !== 'ended') void this.guarded(() => Promise.resolve());
    }, TRIM_DELAY_MS);
  }

  /** The runner reconnected: what the gateway may not have received goes again, in order. */
  resendOutbound(): void {
    if (this.phase === 'ended') return;
    for (const requestId of this.outbox.keys()) this.resendOutbox(requestId);
    for (const [requestId, close] of this.unsentCloses) if (this.host.send(close)) this.unsentCloses.delete(requestId);
  }

  private resendOutbox(requestId: string): void {
    for (const frame of this.outbox.get(requestId)?.frames ?? []) if (frame.released) this.sendOut(frame);
  }

  /** A connection ended: its outbox goes (frames still unwritten are sent, but not kept). */
  private dropOutbox(requestId: string): void {
    this.outbox.delete(requestId);
    this.trims.set(requestId, ALL_FRAMES);
    for (const frame of this.unpersisted) if (frame.requestId === requestId) frame.durable = false;
  }

  /** A restored connection; its record loses credentials persisted before they were filtered. */
  private restoreConnection(record: ConnectionRecord): void {
    const headers = persistedHeaders(record.headers, this.definition.persistHeaders);
    const conn = new ActorConnection(record, true, this.connectionHost());
    if (Object.keys(headers).length !== Object.keys(record.headers).length) {
      record.headers = headers;
      conn.dirty = true;
    }
    this.connections.set(record.requestId, conn);
  }

  /**
   * Loads the outbox: restored connections get their unacknowledged frames back (returned, to be
   * sent again after the restore report); frames of any other connection are deleted.
   */
  private restoreOutbox(stored: Map<string, Buffer>): OutFrame[] {
    const resend: OutFrame[] = [];
    // In key order, which is seq order per connection (the seq is zero-padded).
    for (const [key, value] of stored) {
      const parsed = parseOutKey(key);
      if (!parsed) continue;
      const conn = this.connections.get(parsed.requestId);
      if (!conn) {
        this.trims.set(parsed.requestId, ALL_FRAMES);
        continue;
      }
      const frameValue = parseOutFrame(value);
      if (!frameValue) {
        // Unreadable: dropped, so the actor still starts; the client meets the hole and is
        // closed with 4409 (MessageGap) instead of every generation crashing on it.
        this.log.error({ key }, 'unreadable outbox frame; deleted');
        this.deletions.add(key);
        continue;
      }
      const [data, binary] = frameValue;
      const bytes = binary ? Buffer.from(data, 'base64').length : Buffer.byteLength(data);
      const frame: OutFrame = { ...parsed, data, binary, bytes, durable: true, released: true };
      let box = this.outbox.get(conn.id);
      if (!box) this.outbox.set(conn.id, (box = { frames: [], bytes: 0, written: 0 }));
      box.frames.push(frame);
      box.bytes += bytes;
      box.written = frame.seq;
      conn.record.outSeq = Math.max(conn.record.outSeq ?? 0, frame.seq);
      resend.push(frame);
    }
    return resend;
  }

  // --- Context ------------------------------------------------------------------------------

  private makeContext(): ActorContext {
    const build = ++this.build;
    // A context outlives its instance in whatever the actor's code kept of it (a timer, a
    // promise): once the instance ended or went to rest, it neither reads, writes nor sends.
    const live = () => this.build === build && !this.resting && this.phase !== 'ended';
    const ensureLive = () => {
      if (!live()) throw new NotHosted(`this instance of actor ${this.actorId} was dropped (it ended or rested)`);
    };
    const write = async (put: { key: string; value: string }[], del: string[]): Promise<void> => {
      // A dropped instance's timers write nothing (serially() says why).
      ensureLive();
      await this.host.kv(this.actorId, this.generation, { kind: 'write', put, delete: del });
    };
    // Inside a handler, puts and deletes join the handler's write (a replayed message must not
    // repeat them); reads see them at once. Outside one they are written at once.
    const buffered = async (key: string, value: string | null): Promise<void> => {
      ensureLive(); // not into the write of a handler of the instance that replaced this one
      if (!this.inHandler) return value === null ? write([], [key]) : write([{ key, value }], []);
      this.kvBuffer.set(key, value);
    };
    const kv: ActorKv = {
      get: async (key) => {
        ensureLive();
        const k = userKey(key);
        const pending = this.inHandler ? this.kvBuffer.get(k) : undefined;
        if (pending !== undefined) return pending === null ? null : Buffer.from(pending, 'base64');
        return (await this.kvGet([k]))[0] ?? null;
      },
      put: (key, value) => buffered(userKey(key), Buffer.from(value).toString('base64')),
      delete: (key) => buffered(userKey(key), null),
      list: async (prefix) => {
        ensureLive();
        const p = userKey(prefix, true);
        const entries = await this.host.kv(this.actorId, this.generation, { kind: 'list', prefix: p });
        const merged = new Map(
          entries.filter((e) => !e.key.startsWith(RESERVED_PREFIX)).map((e) => [e.key, e.value ?? '']),
        );
        if (this.inHandler) {
          for (const [key, value] of this.kvBuffer) {
            if (!key.startsWith(p)) continue;
            if (value === null) merged.delete(key);
            else merged.set(key, value);
          }
        }
        return [...merged]
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([key, value]) => ({ key, value: Buffer.from(value, 'base64') }));
      },
    };
    return {
      actorId: this.command.actorId,
      name: this.command.name,
      key: this.command.key,
      input: this.command.input,
      generation: this.command.generation,
      state: null,
      // Inside a handler: commit what it did so far (frames leave at its end). Outside: a write of its own.
      saveState: async () => {
        ensureLive();
        await (this.inHandler ? this.persist() : this.serially(() => Promise.resolve()));
      },
      kv,
      sleep: () => void (live() && this.requestIntent('sleep')),
      destroy: () => void (live() && this.requestIntent('stop')),
      crash: (error) => void (live() && this.fail(error)),
      setAlarm: async (ts) => {
        ensureLive();
        await this.setAlarm(ts);
      },
      connections: () => (live() ? [...this.connections.values()] : []),
      broadcast: (data) => {
        if (!live()) return;
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
   * Activity resets the idle clocks. With no request in flight and no non-hibernatable
   * connection open, the actor rests after `restAfterMs` and sleeps after `sleepAfterMs`
   * (counted from the same last activity, resting or not); hibernatable connections keep it
   * from neither.
   */
  private touch(): void {
    this.clearIdleTimers();
    if (this.phase !== 'running' || this.busy > 0) return;
    this.idleTimer = setTimeout(() => this.requestIntent('sleep'), Math.min(this.idle.sleepAfterMs, MAX_TIMER_MS));
    this.armRest(this.idle.restAfterMs);
  }

  private armRest(delayMs: number): void {
    if (this.restTimer) clearTimeout(this.restTimer);
    this.restTimer = null;
    if (this.resting || this.idle.restAfterMs >= this.idle.sleepAfterMs) return;
    this.restTimer = setTimeout(() => this.restWhenQuiet(), Math.min(delayMs, MAX_TIMER_MS));
  }

  // --- Resting in place (DESIGN §4.1) --------------------------------------------------------

  /**
   * Rests once everything queued has run, if the actor is quiet then: no request in flight,
   * every frame it sent acknowledged (the outbox lives in memory too), nothing left to write.
   * Otherwise it tries again later; any activity meanwhile starts the idle time over.
   */
  private restWhenQuiet(): void {
    this.restTimer = null;
    const run = this.gate.then(async () => {
      if (this.phase !== 'running' || this.resting || this.busy > 0) return;
      if (this.trims.size > 0 || this.deletions.size > 0) await this.persist();
      const quiet =
        this.busy === 0 &&
        this.unsentCloses.size === 0 &&
        [...this.outbox.values()].every((box) => box.frames.length === 0);
      if (quiet && this.phase === 'running') this.dropInstance();
      else this.armRest(this.idle.restAfterMs);
    });
    this.gate = run.catch((err: unknown) => this.fail(err));
  }

  /** What is kept: placement, generation, timers (sleep, alarm) and each connection's record. */
  private dropInstance(): void {
    this.restingRecords = [...this.connections.values()].map((conn) => conn.record);
    for (const conn of this.connections.values()) conn.closed = true; // a dropped reference sends nothing
    this.connections.clear();
    this.outbox.clear();
    this.instance = null;
    this.host.restCache.keep(this.actorId, this.generation, this.savedState);
    this.savedState = '';
    this.resting = true;
    this.reportRestChange('resting');
    this.log.info({ connections: this.restingRecords.length }, 'actor resting');
  }

  /**
   * Runs first in the queue when work arrives for a resting actor: its state comes from the
   * runner's rest cache, else from Postgres again.
   */
  private async rebuild(): Promise<void> {
    let saved = this.host.restCache.take(this.actorId, this.generation);
    if (saved === undefined) {
      const [stored] = await this.kvGet([STATE_KEY]);
      saved = stored ? stored.toString() : JSON.stringify(this.definition.createState?.(this.command.input) ?? null);
    }
    this.resting = false;
    this.instance = this.makeContext();
    this.ctx.state = JSON.parse(saved);
    this.savedState = saved;
    for (const record of this.restingRecords)
      this.connections.set(record.requestId, new ActorConnection(record, true, this.connectionHost()));
    this.restingRecords = [];
    this.reportRestChange('active');
    this.log.info({ connections: this.connections.size }, 'actor active');
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
    const delay = Math.min(Math.max(ts - Date.now(), 0), MAX_TIMER_MS);
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
    if (this.restReport) clearTimeout(this.restReport.timer); // an ended generation reports nothing more
    this.restReport = null;
    if (this.resting) this.host.restCache.drop(this.actorId);
    this.host.ended(this);
  }

  private clearTimers(): void {
    this.clearIdleTimers();
    if (this.alarmTimer) clearTimeout(this.alarmTimer);
    if (this.trimTimer) clearTimeout(this.trimTimer);
    this.alarmTimer = null;
    this.trimTimer = null;
  }

  private clearIdleTimers(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.restTimer) clearTimeout(this.restTimer);
    this.idleTimer = null;
    this.restTimer = null;
  }

  /**
   * Rests and wakes reach the workflow a moment late (REPORT_DELAY_MS): the report of a wake
   * would compete with the wake for the machine (its way through the gateway, Temporal and a
   * worker), and a change undone before its report went is never reported at all. Any other
   * event sends the waiting report first, so the workflow hears them in order.
   */
  private reportRestChange(kind: 'resting' | 'active'): void {
    if (this.restReport) {
      // It undoes the change still waiting to be reported: as far as the workflow knows, nothing happened.
      clearTimeout(this.restReport.timer);
      this.restReport = null;
      return;
    }
    this.restReport = { kind, timer: setTimeout(() => this.flushRestReport(), REPORT_DELAY_MS[kind]) };
  }

  private flushRestReport(): void {
    if (!this.restReport) return;
    const { kind, timer } = this.restReport;
    clearTimeout(timer);
    this.restReport = null;
    this.host.emit(this.actorId, this.generation, { kind });
  }

  private emit(event: ActorEvent): void {
    this.flushRestReport();
    this.host.emit(this.actorId, this.generation, event);
  }
}

/** The actor's idle times: its input's, else its type's, else the runner's defaults. */
function idleTimes(input: unknown, definition: AnyActorDefinition, defaults: IdleTimes): IdleTimes {
  const given = (input && typeof input === 'object' ? input : {}) as Partial<Record<keyof IdleTimes, unknown>>;
  const pick = (name: keyof IdleTimes): number => {
    const fromInput = given[name];
    if (typeof fromInput === 'number' && Number.isFinite(fromInput) && fromInput > 0) return fromInput;
    return definition[name] ?? defaults[name];
  };
  return { restAfterMs: pick('restAfterMs'), sleepAfterMs: pick('sleepAfterMs') };
}

function b64(text: string): string {
  return Buffer.from(text).toString('base64');
}

function outPrefix(requestId: string): string {
  return `${OUT_PREFIX}${requestId}/`;
}

function outKey(requestId: string, seq: number): string {
  return `${outPrefix(requestId)}${String(seq).padStart(16, '0')}`;
}

/** An outbox value: `[data, binary]` as persist() writes it, or null if it is not that. */
function parseOutFrame(value: Buffer): [string, boolean] | null {
  try {
    const parsed: unknown = JSON.parse(value.toString());
    const ok = Array.isArray(parsed) && typeof parsed[0] === 'string' && typeof parsed[1] === 'boolean';
    return ok ? [parsed[0] as string, parsed[1] as boolean] : null;
  } catch {
    return null;
  }
}

function parseOutKey(key: string): { requestId: string; seq: number } | null {
  const match = /^__dormouse\/out\/([^/]+)\/(\d{16})$/.exec(key);
  return match ? { requestId: match[1]!, seq: Number(match[2]) } : null;
}

function userKey(key: string, prefix = false): string {
  if (key.startsWith(RESERVED_PREFIX)) throw new Error(`keys starting with ${RESERVED_PREFIX} are reserved`);
  if (!prefix && key.length === 0) throw new Error('kv keys must not be empty');
  return key;
}
