/**
 * The one wake de-duplicator: at most one wake signal per actor per sleep observed. A burst of
 * requests, opens and hibernating sockets' messages for a sleeping actor sends one signal; only
 * a notice that the actor is going to sleep or asleep (`stopping`, `sleeping`: a wake sent before
 * it may have raced the stop and been dropped) lets the next one through. The notices of the
 * start that the wake caused (`allocating`, `starting`, `running`) do not: a wake then would be
 * a wasted signal in the actor's history.
 *
 * Each wake is an event in the actor's history, so wakes are also rate-limited per actor: within
 * `minIntervalMs` of one, the next is deferred to the end of that interval, never dropped.
 */
import type { Logger } from '../log.js';
import type { ActorState } from '../workflows/actor-api.js';
import type { WakeTrigger } from './metrics.js';

export interface WakerDeps {
  /** Sends the wake signal to the actor's workflow. */
  signal: (actorId: string) => Promise<unknown>;
  /** Told of every wake signal that went out (metrics). */
  onWake: (actorId: string, trigger: WakeTrigger) => void;
  /** The shortest time between two wake signals to one actor. */
  minIntervalMs: number;
  log: Logger;
}

interface Cooldown {
  timer: NodeJS.Timeout;
  /** A wake asked for during the cooldown, sent when it ends. */
  deferred: WakeTrigger | null;
}

export class Waker {
  /** Actors a wake was sent (or deferred) to since their last state notice. */
  private readonly sent = new Set<string>();
  /** Actors woken less than `minIntervalMs` ago. */
  private readonly cooling = new Map<string, Cooldown>();

  constructor(private readonly deps: WakerDeps) {}

  /** Wakes the actor unless a wake already went out since its state last changed. Never throws. */
  wake(actorId: string, trigger: WakeTrigger): void {
    if (this.sent.has(actorId)) return;
    this.sent.add(actorId);
    const cooldown = this.cooling.get(actorId);
    if (cooldown) {
      cooldown.deferred ??= trigger;
      this.deps.log.debug({ actorId }, 'wake deferred by the rate limit');
      return;
    }
    this.send(actorId, trigger);
  }

  /** The actor's state changed: once it is going to sleep or asleep, a wake may go out again. */
  onNotice(actorId: string, state: ActorState): void {
    if (state === 'stopping' || state === 'sleeping') this.sent.delete(actorId);
  }

  /** Notices may have been missed while the LISTEN connection was down. */
  onReconnect(): void {
    this.sent.clear();
  }

  /** Gateway shutdown: deferred wakes are dropped with it. */
  close(): void {
    for (const { timer } of this.cooling.values()) clearTimeout(timer);
    this.cooling.clear();
  }

  private send(actorId: string, trigger: WakeTrigger): void {
    const timer = setTimeout(() => this.cooled(actorId), this.deps.minIntervalMs);
    timer.unref();
    this.cooling.set(actorId, { timer, deferred: null });
    this.deps.signal(actorId).then(
      // Recorded only once sent: a failed signal is no wake.
      () => this.deps.onWake(actorId, trigger),
      (err: unknown) => {
        // Not sent: the next one to ask may try again.
        this.sent.delete(actorId);
        this.deps.log.warn({ err, actorId }, 'waking the actor failed');
      },
    );
  }

  private cooled(actorId: string): void {
    const deferred = this.cooling.get(actorId)?.deferred;
    this.cooling.delete(actorId);
    if (deferred) this.send(actorId, deferred);
  }
}
