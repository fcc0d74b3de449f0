/**
 * Crash backoff (DESIGN §4): 2 s·2^n with n capped, jittered, and the count reset after a quiet
 * period. Pure, so the workflow and unit tests share it; `random` is the workflow's
 * deterministic Math.random.
 */
import type { ActorTiming } from './actor-api.js';

export interface CrashRecord {
  crashCount: number;
  lastCrashAt: number | null;
}

/** The crash count after a crash at `now`: reset to 1 if the actor had been quiet long enough. */
export function nextCrashCount(previous: CrashRecord, now: number, timing: ActorTiming): number {
  const quiet = previous.lastCrashAt === null || now - previous.lastCrashAt >= timing.backoffResetMs;
  return quiet ? 1 : previous.crashCount + 1;
}

/** Delay before restart number `crashCount` (1-based): base·2^(n-1), n capped, ±25 % jitter. */
export function backoffDelayMs(crashCount: number, timing: ActorTiming, random: () => number): number {
  const exponent = Math.min(Math.max(crashCount - 1, 0), timing.backoffMaxExponent);
  const delay = timing.backoffBaseMs * 2 ** exponent;
  const jitter = 0.75 + random() * 0.5;
  return Math.round(delay * jitter);
}
