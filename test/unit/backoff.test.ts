import { describe, expect, it } from 'vitest';
import type { ActorTiming } from '../../src/workflows/actor-api.js';
import { backoffDelayMs, nextCrashCount } from '../../src/workflows/backoff.js';

const timing: ActorTiming = {
  startThresholdMs: 30_000,
  stopThresholdMs: 300_000,
  backoffBaseMs: 2_000,
  backoffMaxExponent: 8,
  backoffResetMs: 600_000,
};

describe('crash backoff', () => {
  it('doubles from the base per crash, without jitter at the midpoint', () => {
    const mid = () => 0.5;
    expect([1, 2, 3, 4].map((n) => backoffDelayMs(n, timing, mid))).toEqual([2_000, 4_000, 8_000, 16_000]);
  });

  it('caps the exponent', () => {
    const mid = () => 0.5;
    expect(backoffDelayMs(9, timing, mid)).toBe(2_000 * 2 ** 8);
    expect(backoffDelayMs(50, timing, mid)).toBe(2_000 * 2 ** 8);
  });

  it('jitters within ±25 %', () => {
    expect(backoffDelayMs(1, timing, () => 0)).toBe(1_500);
    expect(backoffDelayMs(1, timing, () => 0.999999)).toBe(2_500);
  });

  it('counts crashes and resets after a quiet period', () => {
    expect(nextCrashCount({ crashCount: 0, lastCrashAt: null }, 1_000, timing)).toBe(1);
    expect(nextCrashCount({ crashCount: 3, lastCrashAt: 1_000 }, 2_000, timing)).toBe(4);
    expect(nextCrashCount({ crashCount: 3, lastCrashAt: 1_000 }, 1_000 + 600_000, timing)).toBe(1);
  });
});
