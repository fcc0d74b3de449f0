/**
 * One generation of one actor hosted by this runner: loads its state, runs its handlers, tracks
 * idleness for sleep, keeps its alarm, and reports its lifecycle as events.
 */
import type { Logger } from '../log.js';
import type { ActorEvent, GatewayToRunner, KvEntry, KvOp, StartActorCommand, StopReason } from '../protocol/runner-protocol.js';
import type { ActorContext, ActorKv, AnyActorDefinition } from './define-actor.js';
import { FencedError } from './kv-client.js';

export interface InstanceHost {
  emit(actorId: string, generation: number, event: ActorEvent): void;
  kv(actorId: string, generation: number, op: KvOp): Promise<KvEntry[]>;
  /** The instance ended on its own (crash, fenced); the runner forgets it. */
  ended(instance: ActorInstance): void;
  defaultSleepAfterMs: number;
  log: Logger;
}

export interface HttpResult {
  status: number;
  headers: Record<string, string>;
  body: string | null;
}

type HttpRequestFrame = Extract<GatewayToRunner, { type: 'httpRequest' }>;
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
  private inFlight = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  private alarmTimer: NodeJS.Timeout | null = null;
  private intentSent = false;
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

  get isRunning(): boolean {
    return this.phase === 'running';
  }

  /** Loads state, runs onStart, and reports running; a failure is a crash of this start. */
  async start(): Promise<void> {
    try {
      const [state, alarm] = await this.kvGet([STATE_KEY, ALARM_KEY]);
      this.ctx.state = state ? JSON.parse(state.toString()) : (this.definition.createState?.(this.command.input) ?? null);
      this.savedState = JSON.stringify(this.ctx.state);
      await this.definition.onStart?.(this.ctx);
      await this.saveIfChanged();
      if (this.phase !== 'starting') return; // crashed or fenced during onStart
      this.phase = 'running';
      this.emit({ kind: 'running' });
      this.log.info({ reason: this.command.reason }, 'actor running');
      if (alarm) this.scheduleAlarm(Number(alarm.toString()));
      this.touch();
    } catch (err) {
      this.fail(err);
    }
  }

  /**
   * A requested stop: onStop, save, report stopped. A start still in progress is abandoned
   * instead: its onStart may still be running, so neither onStop nor a save would be safe.
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
      await this.definition.onStop?.(this.ctx);
      await this.saveIfChanged();
    } catch (err) {
      if (err instanceof FencedError) return this.end('fenced while stopping');
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

  async handleHttp(frame: HttpRequestFrame): Promise<HttpResult> {
    this.inFlight++;
    this.touch();
    try {
      if (!this.definition.onRequest) return { status: 404, headers: { 'content-type': 'text/plain' }, body: b64('actor has no request handler') };
      const request = new Request(`http://actor${frame.path}`, {
        method: frame.method,
        headers: frame.headers,
        body: frame.body === null || frame.method === 'GET' || frame.method === 'HEAD' ? null : Buffer.from(frame.body, 'base64'),
      });
      const response = await this.definition.onRequest(this.ctx, request);
      await this.saveIfChanged();
      const body = Buffer.from(await response.arrayBuffer());
      return { status: response.status, headers: Object.fromEntries(response.headers), body: body.length ? body.toString('base64') : null };
    } catch (err) {
      if (err instanceof FencedError) this.end('fenced');
      this.log.warn({ err }, 'request handler failed');
      return { status: 500, headers: { 'content-type': 'text/plain' }, body: b64(err instanceof Error ? err.message : 'internal error') };
    } finally {
      this.inFlight--;
      this.touch();
    }
  }

  // --- Context ------------------------------------------------------------------------------

  private makeContext(): ActorContext {
    const kv: ActorKv = {
      get: async (key) => (await this.kvGet([userKey(key)]))[0] ?? null,
      put: async (key, value) => {
        await this.host.kv(this.actorId, this.generation, {
          kind: 'put',
          entries: [{ key: userKey(key), value: Buffer.from(value).toString('base64') }],
        });
      },
      delete: async (key) => void (await this.host.kv(this.actorId, this.generation, { kind: 'delete', keys: [userKey(key)] })),
      list: async (prefix) => {
        const entries = await this.host.kv(this.actorId, this.generation, { kind: 'list', prefix: userKey(prefix, true) });
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
      saveState: () => this.saveState(),
      kv,
      sleep: () => this.requestIntent('sleep'),
      destroy: () => this.requestIntent('stop'),
      crash: (error) => this.fail(error),
      setAlarm: (ts) => this.setAlarm(ts),
      log: this.log,
    };
  }

  private async kvGet(keys: string[]): Promise<(Buffer | null)[]> {
    const entries = await this.host.kv(this.actorId, this.generation, { kind: 'get', keys });
    return entries.map((e) => (e.value === null ? null : Buffer.from(e.value, 'base64')));
  }

  private async saveState(): Promise<void> {
    const json = JSON.stringify(this.ctx.state);
    await this.host.kv(this.actorId, this.generation, { kind: 'put', entries: [{ key: STATE_KEY, value: b64(json) }] });
    this.savedState = json;
  }

  private async saveIfChanged(): Promise<void> {
    if (JSON.stringify(this.ctx.state) !== this.savedState) await this.saveState();
  }

  // --- Sleep, alarms, crashes ---------------------------------------------------------------

  private requestIntent(intent: 'sleep' | 'stop'): void {
    if (this.phase !== 'running' || this.intentSent) return;
    this.intentSent = true;
    this.emit({ kind: 'intent', intent });
    this.log.info({ intent }, 'actor asked to stop');
  }

  /** Activity resets the idle clock; with nothing in flight, the actor sleeps after the idle time. */
  private touch(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (this.phase !== 'running' || this.inFlight > 0) return;
    this.idleTimer = setTimeout(() => this.requestIntent('sleep'), this.sleepAfterMs());
  }

  private sleepAfterMs(): number {
    const input = this.command.input as { sleepAfterMs?: unknown } | null;
    const fromInput = input && typeof input === 'object' ? input.sleepAfterMs : undefined;
    if (typeof fromInput === 'number' && Number.isFinite(fromInput) && fromInput > 0) return fromInput;
    return this.definition.sleepAfterMs ?? this.host.defaultSleepAfterMs;
  }

  private async setAlarm(ts: number | null): Promise<void> {
    if (ts === null) await this.host.kv(this.actorId, this.generation, { kind: 'delete', keys: [ALARM_KEY] });
    else await this.host.kv(this.actorId, this.generation, { kind: 'put', entries: [{ key: ALARM_KEY, value: b64(String(ts)) }] });
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
    this.inFlight++;
    try {
      await this.setAlarm(null);
      await this.definition.onAlarm?.(this.ctx);
      await this.saveIfChanged();
    } catch (err) {
      this.fail(err);
    } finally {
      this.inFlight--;
      this.touch();
    }
  }

  /** A crash: report it and end this generation; the workflow applies the crash policy. */
  private fail(err: unknown): void {
    if (this.phase === 'ended') return;
    if (err instanceof FencedError) return this.end('fenced');
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
