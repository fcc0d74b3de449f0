/**
 * The one wake de-duplicator: at most one wake signal per actor between two of its state
 * notices. A burst of requests, opens and hibernating sockets' messages for a sleeping actor
 * sends one signal; the next state change (the actor falling asleep anew, or a wake that raced it
 * stopping and was dropped) lets the next one through.
 */
import type { Logger } from '../log.js';
import type { WakeTrigger } from './metrics.js';

export interface WakerDeps {
  /** Sends the wake signal to the actor's workflow. */
  signal: (actorId: string) => Promise<unknown>;
  /** Told of every wake actually sent (metrics). */
  onWake: (actorId: string, trigger: WakeTrigger) => void;
  log: Logger;
}

export class Waker {
  /** Actors a wake was sent to since their last state notice. */
  private readonly sent = new Set<string>();

  constructor(private readonly deps: WakerDeps) {}

  /** Wakes the actor unless a wake already went out since its state last changed. Never throws. */
  wake(actorId: string, trigger: WakeTrigger): void {
    if (this.sent.has(actorId)) return;
    this.sent.add(actorId);
    this.deps.onWake(actorId, trigger);
    this.deps.signal(actorId).catch((err: unknown) => {
      // Not sent: the next one to ask may try again.
      this.sent.delete(actorId);
      this.deps.log.warn({ err, actorId }, 'waking the actor failed');
    });
  }

  /** The actor's state changed: whatever it needs next, a wake may go out again. */
  onNotice(actorId: string): void {
    this.sent.delete(actorId);
  }

  /** Notices may have been missed while the LISTEN connection was down. */
  onReconnect(): void {
    this.sent.clear();
  }
}
