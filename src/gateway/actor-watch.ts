/**
 * Waiting for an actor to be running, driven by the registry's state notifications (never by
 * polling): subscribe, read the row, and read again on every notice for that actor, until it
 * runs or the deadline passes. A sleeping actor is woken on the way.
 *
 * A start that a runner connected here reports running is as good as the registry saying so:
 * the registry row names that runner and generation (state `starting`), and the runner speaks
 * for its own start. Waiting for the registry would add the workflow's round to record it (a
 * signal, a workflow task, an activity, a NOTIFY). Should the generation be gone by the time a
 * request reaches it, its runner answers NotHosted and the router waits for the next one.
 */
import { getActor, type Actor } from '../db/actors.js';
import type { ActorStateNotice } from '../db/channels.js';
import type { Queryable } from '../db/pool.js';
import { ActorDestroyed, ActorNotFound, ActorUnavailable } from '../errors.js';

/** An actor the registry shows running, and where. */
export type RunningActor = Actor & { runnerId: string };

export interface WaitOptions {
  /** Absolute Date.now() deadline. */
  deadline: number;
  /**
   * Asks for a wake; called on every read that finds the actor asleep, going to sleep, or on a
   * stale generation. The caller de-duplicates (the Waker).
   */
  wake: () => void;
  /** A generation known to be gone (its runner said so): wait for a newer one. */
  staleGeneration?: number;
}

/** Bound on remembered running reports (each is dropped by the next notice for its actor). */
const MAX_REPORTS = 10_000;

export class ActorWatch {
  private readonly waiters = new Map<string, Set<() => void>>();
  /** Per actor, the latest start a runner connected here reported running, until the registry moves on. */
  private readonly reported = new Map<string, { generation: number; runnerId: string }>();

  constructor(private readonly db: Queryable) {}

  /** Requests waiting for their actor right now. */
  get waiting(): number {
    let n = 0;
    for (const set of this.waiters.values()) n += set.size;
    return n;
  }

  onNotice(notice: ActorStateNotice): void {
    const report = this.reported.get(notice.actorId);
    if (report && (notice.state !== 'starting' || notice.generation !== report.generation))
      this.reported.delete(notice.actorId);
    this.wakeWaiters(notice.actorId);
  }

  /** A runner connected here reports running the start it was given (runner-connection.ts). */
  onReportedRunning(actorId: string, generation: number, runnerId: string): void {
    this.reported.delete(actorId); // re-inserted last: the oldest reports go first
    this.reported.set(actorId, { generation, runnerId });
    if (this.reported.size > MAX_REPORTS) this.reported.delete(this.reported.keys().next().value!);
    this.wakeWaiters(actorId);
  }

  /** Notices may have been missed: every waiter reads again, and only the registry is believed. */
  onReconnect(): void {
    this.reported.clear();
    for (const set of this.waiters.values()) for (const waiter of set) waiter();
  }

  private wakeWaiters(actorId: string): void {
    for (const waiter of this.waiters.get(actorId) ?? []) waiter();
  }

  /** The registry shows the actor starting on the runner that has reported it running. */
  private reportedRunning(actor: Actor): boolean {
    const report = this.reported.get(actor.actorId);
    return actor.state === 'starting' && report?.generation === actor.generation && report.runnerId === actor.runnerId;
  }

  /** Throws ActorNotFound, ActorDestroyed, or ActorUnavailable at the deadline. */
  async waitUntilRunning(actorId: string, options: WaitOptions): Promise<RunningActor> {
    // One waiter for the whole wait; the counter tells whether a notice came in since the last read.
    let notices = 0;
    let onNotice: (() => void) | null = null;
    const waiter = () => {
      notices++;
      onNotice?.();
    };
    const set = this.waiters.get(actorId) ?? new Set();
    set.add(waiter);
    this.waiters.set(actorId, set);
    try {
      for (;;) {
        const seen = notices;
        const actor = await getActor(this.db, actorId);
        if (!actor) throw new ActorNotFound(actorId);
        if (actor.state === 'destroyed') throw new ActorDestroyed(actorId);
        const stale = options.staleGeneration !== undefined && actor.generation <= options.staleGeneration;
        const running = actor.state === 'running' || this.reportedRunning(actor);
        if (running && actor.runnerId && !stale) return { ...actor, runnerId: actor.runnerId };
        if (actor.state === 'sleeping' || actor.state === 'stopping' || stale) options.wake();
        if (notices !== seen) continue; // something changed while reading: read again
        const remaining = options.deadline - Date.now();
        const changed =
          remaining > 0 &&
          (await new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), remaining);
            onNotice = () => {
              clearTimeout(timer);
              resolve(true);
            };
          }));
        onNotice = null;
        if (!changed)
          throw new ActorUnavailable(`actor ${actorId} did not become ready in time (state ${actor.state})`);
      }
    } finally {
      set.delete(waiter);
      if (set.size === 0 && this.waiters.get(actorId) === set) this.waiters.delete(actorId);
    }
  }
}
