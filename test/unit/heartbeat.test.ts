/**
 * The gateway's heartbeat lapse (H2): a gateway that cannot heartbeat for longer than T stops
 * claiming its sockets. The lapse counts from when the last successful beat *began*, so a slow
 * beat cannot stretch it past T. Fake timers and a database whose answers the test releases.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { Db } from '../../src/db/pool.js';
import { GatewayHeartbeat } from '../../src/gateway/heartbeat.js';
import { createLogger } from '../../src/log.js';

const T = 90_000;
const timing = { ...loadConfig({}).timing, hibernationThresholdMs: T, gatewayHeartbeatMs: T / 2 };

/** A database whose heartbeats stay pending until the test answers them (by their order of arrival). */
function slowDb() {
  const pending: (() => void)[] = [];
  const db = {
    query: () => new Promise((resolve) => pending.push(() => resolve({ rowCount: 1, rows: [] }))),
  } as unknown as Db;
  return { db, answer: (i: number) => pending[i]!() };
}

let heartbeat: GatewayHeartbeat | undefined;
beforeEach(() => void vi.useFakeTimers());
afterEach(() => {
  heartbeat?.stop();
  vi.useRealTimers();
});

describe('gateway heartbeat lapse', () => {
  it('fires T after a slow beat began, not T after it ended', async () => {
    const { db, answer } = slowDb();
    const abandoned: number[] = [];
    heartbeat = new GatewayHeartbeat(db, 'gw-1', 'http://gw', timing, createLogger('test', 'silent'), () =>
      abandoned.push(Date.now()),
    );
    const t0 = Date.now();
    await vi.advanceTimersByTimeAsync(T / 2); // the first beat begins…
    await vi.advanceTimersByTimeAsync(20_000); // …takes 20 s…
    answer(0); // …and succeeds; every later beat hangs
    await vi.advanceTimersByTimeAsync(0);

    await vi.advanceTimersByTimeAsync(t0 + T / 2 + T - 1 - Date.now());
    expect(abandoned).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(abandoned).toEqual([t0 + T / 2 + T]);
  });

  it('a slow beat that ends after a later one does not pull the lapse earlier', async () => {
    const { db, answer } = slowDb();
    const abandoned: number[] = [];
    const beatEveryThird = { ...timing, gatewayHeartbeatMs: T / 3 };
    heartbeat = new GatewayHeartbeat(db, 'gw-1', 'http://gw', beatEveryThird, createLogger('test', 'silent'), () =>
      abandoned.push(Date.now()),
    );
    const t0 = Date.now();
    await vi.advanceTimersByTimeAsync((2 * T) / 3); // beats A (at T/3) and B (at 2T/3) pending
    answer(1); // B succeeds first…
    await vi.advanceTimersByTimeAsync(0);
    answer(0); // …then A, which began earlier
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(t0 + (2 * T) / 3 + T - 1 - Date.now());
    expect(abandoned).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(abandoned).toEqual([t0 + (2 * T) / 3 + T]);
  });
});
