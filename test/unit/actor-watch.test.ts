import { randomUUID } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import type { Queryable } from '../../src/db/pool.js';
import { ActorWatch } from '../../src/gateway/actor-watch.js';
import { ActorUnavailable } from '../../src/errors.js';

const actorId = randomUUID();
const RUNNER = 'runner-a';
const row = (state: string, generation: number) => ({
  actor_id: actorId,
  name: 'chat',
  key: null,
  input: null,
  crash_policy: 'restart',
  state,
  generation,
  runner_id: state === 'running' || state === 'starting' ? RUNNER : null,
  crash_count: 0,
  last_error: null,
  created_at: new Date(),
  destroyed_at: null,
});

/** A registry that answers reads from a script, and can notify during a read. */
function registry(reads: { state: string; generation: number; during?: () => void }[]): Queryable {
  let i = 0;
  return {
    query: (async () => {
      const read = reads[Math.min(i++, reads.length - 1)]!;
      read.during?.();
      return { rows: [row(read.state, read.generation)] };
    }) as unknown as Queryable['query'],
  };
}

const notice = (state: 'starting' | 'running' | 'sleeping', generation: number) => ({
  actorId,
  state,
  generation,
  runnerId: null,
});

describe('ActorWatch', () => {
  it('does not miss a notice that arrives while it reads, and leaves no waiter behind', async () => {
    const db = registry([
      { state: 'starting', generation: 1, during: () => watch.onNotice(notice('running', 1)) },
      { state: 'running', generation: 1 },
    ]);
    const watch = new ActorWatch(db);
    const actor = await watch.waitUntilRunning(actorId, { deadline: Date.now() + 1000, wake: () => undefined });
    expect(actor.state).toBe('running');
    expect(watch.waiting).toBe(0);
  });

  it('waits for a notice, then reads again', async () => {
    const watch = new ActorWatch(
      registry([
        { state: 'starting', generation: 1 },
        { state: 'running', generation: 1 },
      ]),
    );
    const waiting = watch.waitUntilRunning(actorId, { deadline: Date.now() + 5000, wake: () => undefined });
    await vi.waitFor(() => expect(watch.waiting).toBe(1));
    watch.onNotice(notice('running', 1));
    expect((await waiting).generation).toBe(1);
    expect(watch.waiting).toBe(0);
  });

  it('gives up at the deadline with a 503, and leaves no waiter behind', async () => {
    const watch = new ActorWatch(registry([{ state: 'starting', generation: 1 }]));
    const err = await watch
      .waitUntilRunning(actorId, { deadline: Date.now() + 50, wake: () => undefined })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ActorUnavailable);
    expect((err as ActorUnavailable).httpStatus).toBe(503);
    expect(watch.waiting).toBe(0);
  });

  it('asks for a wake on every read that finds it asleep (the Waker de-duplicates)', async () => {
    const wake = vi.fn(() => undefined);
    const watch = new ActorWatch(
      registry([
        { state: 'sleeping', generation: 1 },
        { state: 'sleeping', generation: 2 },
        { state: 'running', generation: 3 },
      ]),
    );
    const waiting = watch.waitUntilRunning(actorId, { deadline: Date.now() + 5000, wake });
    await vi.waitFor(() => expect(wake).toHaveBeenCalledTimes(1));
    watch.onNotice(notice('sleeping', 2));
    await vi.waitFor(() => expect(wake).toHaveBeenCalledTimes(2));
    watch.onNotice(notice('running', 3));
    expect((await waiting).generation).toBe(3);
  });

  it('routes to a start that its runner reported running here, before the registry records it', async () => {
    const watch = new ActorWatch(registry([{ state: 'starting', generation: 2 }]));
    const waiting = watch.waitUntilRunning(actorId, { deadline: Date.now() + 5000, wake: () => undefined });
    await vi.waitFor(() => expect(watch.waiting).toBe(1));
    watch.onReportedRunning(actorId, 2, RUNNER);
    expect(await waiting).toMatchObject({ generation: 2, runnerId: RUNNER });
  });

  it('believes a report only for the generation and runner the registry names, until the registry moves on', async () => {
    const watch = new ActorWatch(registry([{ state: 'starting', generation: 2 }]));
    const wait = (ms: number) =>
      watch
        .waitUntilRunning(actorId, { deadline: Date.now() + ms, wake: () => undefined })
        .then((a) => a.generation)
        .catch((e: unknown) => e);
    watch.onReportedRunning(actorId, 1, RUNNER); // an older generation
    expect(await wait(50)).toBeInstanceOf(ActorUnavailable);
    watch.onReportedRunning(actorId, 2, 'runner-b'); // a runner the registry does not name
    expect(await wait(50)).toBeInstanceOf(ActorUnavailable);
    watch.onReportedRunning(actorId, 2, RUNNER);
    expect(await wait(50)).toBe(2);
    watch.onNotice(notice('sleeping', 2)); // that generation went on: the report is forgotten
    expect(await wait(50)).toBeInstanceOf(ActorUnavailable);
    watch.onReportedRunning(actorId, 2, RUNNER);
    watch.onReconnect(); // notices missed: only the registry is believed
    expect(await wait(50)).toBeInstanceOf(ActorUnavailable);
  });
});
