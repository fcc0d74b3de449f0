/**
 * Numbers the events a runner emits per (actor, generation), keeps each until the gateway
 * acknowledges it (that is, until its workflow holds it), and resends the unacknowledged ones
 * in order after a reconnect. Frames are batched per tick.
 */
import type { ActorEvent, EventEnvelope, RunnerToGateway } from '../protocol/runner-protocol.js';

const MAX_EVENTS_PER_FRAME = 1000;

export class EventOutbox {
  private readonly nextIndex = new Map<string, number>();
  private readonly retired = new Set<string>();
  private unacked: EventEnvelope[] = [];
  private unsent: EventEnvelope[] = [];
  private flushScheduled = false;
  private drainedWaiters: (() => void)[] = [];

  constructor(private readonly send: (frame: RunnerToGateway) => boolean) {}

  emit(actorId: string, generation: number, event: ActorEvent): void {
    const key = `${actorId}/${generation}`;
    const index = this.nextIndex.get(key) ?? 0;
    this.nextIndex.set(key, index + 1);
    const envelope = { actorId, generation, index, event };
    this.unacked.push(envelope);
    this.unsent.push(envelope);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  /** The generation is over on this runner: its counter goes once its events are acknowledged. */
  retire(actorId: string, generation: number): void {
    this.retired.add(`${actorId}/${generation}`);
    this.forgetRetired();
  }

  onAck(acks: { actorId: string; generation: number; index: number }[]): void {
    const acked = new Set(acks.map((a) => `${a.actorId}/${a.generation}/${a.index}`));
    this.unacked = this.unacked.filter((e) => !acked.has(`${e.actorId}/${e.generation}/${e.index}`));
    this.forgetRetired();
    if (this.unacked.length === 0) {
      for (const resolve of this.drainedWaiters.splice(0)) resolve();
    }
  }

  private forgetRetired(): void {
    const live = new Set(this.unacked.map((e) => `${e.actorId}/${e.generation}`));
    for (const key of this.retired) {
      if (live.has(key)) continue;
      this.retired.delete(key);
      this.nextIndex.delete(key);
    }
  }

  /** After a reconnect everything unacknowledged goes again, in the original order. */
  resendAll(): void {
    this.unsent = [...this.unacked];
    this.flush();
  }

  /** Resolves once every emitted event is acknowledged, or after `timeoutMs`. */
  drained(timeoutMs: number): Promise<boolean> {
    if (this.unacked.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.drainedWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private flush(): void {
    while (this.unsent.length > 0) {
      const batch = this.unsent.slice(0, MAX_EVENTS_PER_FRAME);
      if (!this.send({ type: 'events', events: batch })) return; // disconnected: resendAll() on welcome
      this.unsent = this.unsent.slice(batch.length);
    }
  }
}
