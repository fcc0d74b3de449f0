/**
 * Waiting on a condition with a deadline: the only way the dev stack and the tests synchronise
 * with other processes. A bare sleep either wastes time or is too short on a slow machine.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { errorMessage } from '../src/errors.js';

export interface WaitOptions {
  /** Give up after this long. */
  timeoutMs: number;
  /** Pause between attempts (default 100 ms). */
  intervalMs?: number;
  /** What is being waited for; starts the error message on timeout. */
  message: string;
  /** Stops the wait early, rejecting with the signal's reason (e.g. the awaited process died). */
  signal?: AbortSignal;
}

export class WaitTimeoutError extends Error {
  override name = 'WaitTimeoutError';
}

/**
 * Calls `fn` until it returns a value other than `undefined`, `null` or `false`, and resolves
 * with that value. An attempt that throws counts as "not yet"; its error is reported if the
 * deadline passes. Each attempt must bound its own duration (a hung attempt delays the verdict).
 */
export async function waitFor<T>(
  fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  options: WaitOptions,
): Promise<T> {
  const { timeoutMs, intervalMs = 100, message, signal } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    signal?.throwIfAborted();
    try {
      const value = await fn();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    signal?.throwIfAborted();
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      const cause = lastError === undefined ? '' : ` (last attempt failed: ${errorMessage(lastError)})`;
      throw new WaitTimeoutError(`${message}: not done after ${timeoutMs} ms${cause}`, { cause: lastError });
    }
    try {
      await delay(Math.min(intervalMs, remaining), undefined, { signal });
    } catch {
      signal?.throwIfAborted();
    }
  }
}

/**
 * Like Promise.all, but waits for every promise to settle before rejecting with the first
 * failure, so that nothing started in parallel is still starting when the caller cleans up.
 */
export async function allSettledOrThrow<T extends readonly unknown[]>(promises: {
  [K in keyof T]: Promise<T[K]>;
}): Promise<T> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/** Resolves with the promise's value, or undefined if it takes longer than `ms`. */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
