/**
 * The gateway's Prometheus metrics (`GET /metrics`). Counts and latencies are observed from the
 * actor state notices every gateway hears; totals that live in Postgres (actors by state, the
 * command queue, connected runners) are read when scraped, so any gateway reports the fleet. The
 * actor counts, a GROUP BY over every live actor, are read at most once per ACTOR_COUNTS_TTL_MS
 * however often and by however many scrapers the gateway is scraped.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { pendingCommandCount } from '../db/commands.js';
import type { ActorStateNotice } from '../db/channels.js';
import type { Queryable } from '../db/pool.js';
import { connectedRunnerCount } from '../db/runners.js';
import { ACTOR_STATES } from '../workflows/actor-api.js';

export type WakeTrigger = 'http' | 'websocket';

/** Seconds, from a fast local start to the 30 s start threshold and beyond. */
const LATENCY_BUCKETS = [0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1, 2, 5, 10, 30, 60];
/** Starts and wakes in flight are remembered at most this long (a start that never runs is forgotten). */
const PENDING_TTL_MS = 10 * 60_000;
/** How long a scrape reuses the actor counts (Prometheus scrapes every 15 s or so by default). */
export const ACTOR_COUNTS_TTL_MS = 5_000;

export interface SocketStats {
  sockets: number;
  hibernating: number;
  pendingBytes: number;
}

export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly starts: Counter;
  private readonly startSeconds: Histogram;
  private readonly wakes: Counter<'trigger'>;
  private readonly wakeSeconds: Histogram<'trigger'>;
  /** Per actor: when its current start (allocation) and the wake this gateway asked for began. */
  private readonly startedAt = new Map<string, { generation: number; at: number }>();
  private readonly wokenAt = new Map<string, { trigger: WakeTrigger; at: number }>();

  constructor(db: Queryable) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.starts = new Counter({
      name: 'dormouse_actor_starts_total',
      help: 'Actor starts that reached running.',
      registers,
    });
    this.startSeconds = new Histogram({
      name: 'dormouse_actor_start_seconds',
      help: 'From an actor generation allocated to it running.',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.wakes = new Counter({
      name: 'dormouse_actor_wakes_total',
      help: 'Wakes this gateway asked for, by what asked.',
      labelNames: ['trigger'],
      registers,
    });
    this.wakeSeconds = new Histogram({
      name: 'dormouse_actor_wake_seconds',
      help: 'From a wake this gateway asked for to the actor running.',
      labelNames: ['trigger'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    const actorCounts = cachedFor(ACTOR_COUNTS_TTL_MS, async () => {
      const { rows } = await db.query<{ state: string; n: number }>(
        'SELECT state, count(*)::int AS n FROM actors WHERE destroyed_at IS NULL GROUP BY state',
      );
      return new Map(rows.map((r) => [r.state, r.n]));
    });
    new Gauge({
      name: 'dormouse_actors',
      help: `Actors not destroyed, by state (at most ${ACTOR_COUNTS_TTL_MS / 1000} s old).`,
      labelNames: ['state'],
      registers,
      async collect() {
        const counts = await actorCounts();
        for (const state of ACTOR_STATES) if (state !== 'destroyed') this.set({ state }, counts.get(state) ?? 0);
      },
    });
    new Gauge({
      name: 'dormouse_command_queue_depth',
      help: 'Runner commands queued and not yet acknowledged.',
      registers,
      async collect() {
        this.set(await pendingCommandCount(db));
      },
    });
    new Gauge({
      name: 'dormouse_runners_connected',
      help: 'Runners connected to a gateway and not lost.',
      registers,
      async collect() {
        this.set(await connectedRunnerCount(db));
      },
    });
  }

  /** Gauges of the client sockets this gateway holds, read from `sockets` when scraped. */
  watchSockets(sockets: () => SocketStats): void {
    const registers = [this.registry];
    const socketGauge = (name: string, help: string, pick: (s: SocketStats) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(pick(sockets()));
        },
      });
    socketGauge('dormouse_client_sockets', 'Client WebSockets this gateway holds.', (s) => s.sockets);
    socketGauge(
      'dormouse_hibernating_sockets',
      'Client WebSockets this gateway holds while their actor is stopped.',
      (s) => s.hibernating,
    );
    socketGauge(
      'dormouse_pending_bytes',
      'Client message bytes waiting for their actor to acknowledge them.',
      (s) => s.pendingBytes,
    );
  }

  /** A wake this gateway asked for; timed until the actor runs. */
  wakeRequested(actorId: string, trigger: WakeTrigger): void {
    this.wakes.inc({ trigger });
    if (!this.wokenAt.has(actorId)) this.wokenAt.set(actorId, { trigger, at: Date.now() });
  }

  onNotice(notice: ActorStateNotice): void {
    const now = Date.now();
    if (notice.state === 'starting') this.startedAt.set(notice.actorId, { generation: notice.generation, at: now });
    if (notice.state === 'running') {
      const start = this.startedAt.get(notice.actorId);
      if (start?.generation === notice.generation) {
        this.starts.inc();
        this.startSeconds.observe((now - start.at) / 1000);
      }
      const wake = this.wokenAt.get(notice.actorId);
      if (wake) this.wakeSeconds.observe({ trigger: wake.trigger }, (now - wake.at) / 1000);
    }
    if (notice.state !== 'starting') this.startedAt.delete(notice.actorId);
    if (notice.state === 'running' || notice.state === 'destroyed') this.wokenAt.delete(notice.actorId);
    this.forgetStale(now);
  }

  private forgetStale(now: number): void {
    for (const [actorId, { at }] of this.startedAt) if (now - at > PENDING_TTL_MS) this.startedAt.delete(actorId);
    for (const [actorId, { at }] of this.wokenAt) if (now - at > PENDING_TTL_MS) this.wokenAt.delete(actorId);
  }
}

/** `read`, answered from its last result while that is younger than `ttlMs`; a failed read is not kept. */
function cachedFor<T>(ttlMs: number, read: () => Promise<T>): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | null = null;
  return () => {
    const now = Date.now();
    if (last === null || now - last.at >= ttlMs) {
      const value = read();
      const entry = { at: now, value };
      last = entry;
      value.catch(() => {
        if (last === entry) last = null;
      });
    }
    return last.value;
  };
}
