/**
 * `/metrics` reads the actor counts, a GROUP BY over every live actor, at most once per
 * ACTOR_COUNTS_TTL_MS however often it is scraped (issue 8 §2, scale).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Queryable } from '../../src/db/pool.js';
import { ACTOR_COUNTS_TTL_MS, GatewayMetrics } from '../../src/gateway/metrics.js';

/** A database that answers every metric's query and counts the GROUP BYs over actors. */
function countingDb(states: { state: string; n: number }[]) {
  const seen = { groupBys: 0 };
  const db = {
    query: async (sql: string) => {
      if (sql.includes('GROUP BY state')) {
        seen.groupBys++;
        return { rows: states, rowCount: states.length };
      }
      return { rows: [{ n: '0' }], rowCount: 1 };
    },
  } as unknown as Queryable;
  return { db, seen };
}

afterEach(() => void vi.useRealTimers());

describe('gateway metrics', () => {
  it('count actors by state once per TTL, not once per scrape', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const states = [{ state: 'running', n: 3 }];
    const { db, seen } = countingDb(states);
    const metrics = new GatewayMetrics(db);

    const first = await metrics.registry.metrics();
    expect(first).toContain('dormouse_actors{state="running"} 3');
    await Promise.all([metrics.registry.metrics(), metrics.registry.metrics()]);
    expect(seen.groupBys).toBe(1);

    states[0] = { state: 'running', n: 4 };
    vi.setSystemTime(Date.now() + ACTOR_COUNTS_TTL_MS);
    expect(await metrics.registry.metrics()).toContain('dormouse_actors{state="running"} 4');
    expect(seen.groupBys).toBe(2);
  });
});
