/**
 * Exponential backoff with jitter for the reconnect and retry loops of long-running processes
 * (the runner's gateway socket, the gateway's LISTEN connection, event signals). Workflows have
 * their own, deterministic one (workflows/backoff.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface BackoffOptions {
  /** The first delay. */
  initialMs: number;
  /** No delay is longer than this. */
  maxMs: number;
  /** Scale each delay by a random factor in [1 - jitter, 1]: many peers retrying at once spread out. */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 100, maxMs: 5_000, jitter: 0.5 };

/** Delays that double from `initialMs` to `maxMs`; `reset` after a success starts over. */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly options: BackoffOptions = DEFAULT_BACKOFF,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt. */
  next(): number {
    const { initialMs, maxMs, jitter } = this.options;
    const base = Math.min(initialMs * 2 ** this.attempt, maxMs);
    if (base < maxMs) this.attempt++;
    return Math.round(base * (1 - jitter * this.random()));
  }

  reset(): void {
    this.attempt = 0;
  }
}

export interface RetryOptions {
  /** Checked before each attempt: once true, the loop gives up and resolves with undefined. */
  stopped: () => boolean;
  /** Told of each failure and the delay before the next attempt (log it). */
  onError: (err: unknown, retryInMs: number) => void;
  backoff?: Backoff;
}

/** Runs `attempt` until it succeeds or `stopped()`; resolves with its result, or undefined if stopped. */
export async function retryWithBackoff<T>(attempt: () => Promise<T>, options: RetryOptions): Promise<T | undefined> {
  const backoff = options.backoff ?? new Backoff();
  while (!options.stopped()) {
    try {
      return await attempt();
    } catch (err) {
      const delay = backoff.next();
      options.onError(err, delay);
      await sleep(delay);
    }
  }
  return undefined;
}
