import { describe, expect, it } from 'vitest';
import { Backoff, retryWithBackoff } from '../../src/util/backoff.js';
import { KeyedQueue } from '../../src/util/keyed-queue.js';

describe('Backoff', () => {
  it('doubles up to the maximum, with jitter below the base, and starts over on reset', () => {
    const noJitter = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0.5 }, () => 0);
    expect([1, 2, 3, 4, 5].map(() => noJitter.next())).toEqual([100, 200, 400, 800, 1000]);
    noJitter.reset();
    expect(noJitter.next()).toBe(100);
    const fullJitter = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0.5 }, () => 1);
    expect(fullJitter.next()).toBe(50);
  });
});

describe('retryWithBackoff', () => {
  it('retries until the attempt succeeds, reporting each failure', async () => {
    let calls = 0;
    const errors: number[] = [];
    const result = await retryWithBackoff(
      async () => {
        if (++calls < 3) throw new Error(`fail ${calls}`);
        return 'ok';
      },
      {
        stopped: () => false,
        onError: (_err, ms) => errors.push(ms),
        backoff: new Backoff({ initialMs: 1, maxMs: 2, jitter: 0 }),
      },
    );
    expect(result).toBe('ok');
    expect(errors).toEqual([1, 2]);
  });

  it('gives up once stopped', async () => {
    let stopped = false;
    const result = await retryWithBackoff(
      async () => {
        stopped = true;
        throw new Error('down');
      },
      { stopped: () => stopped, onError: () => undefined, backoff: new Backoff({ initialMs: 1, maxMs: 1, jitter: 0 }) },
    );
    expect(result).toBeUndefined();
  });
});

describe('KeyedQueue', () => {
  it('runs one task at a time per key, in order, and keys independently', async () => {
    const queue = new KeyedQueue();
    const log: string[] = [];
    let releaseA!: () => void;
    const a1 = queue.run('a', () => new Promise<void>((r) => (releaseA = r)).then(() => void log.push('a1')));
    const a2 = queue.run('a', async () => void log.push('a2'));
    await queue.run('b', async () => void log.push('b1'));
    expect(log).toEqual(['b1']);
    releaseA();
    await Promise.all([a1, a2]);
    expect(log).toEqual(['b1', 'a1', 'a2']);
  });

  it('goes on after a failed task, which rejects only its own caller, and forgets idle keys', async () => {
    const queue = new KeyedQueue();
    const failed = queue.run('a', async () => {
      throw new Error('boom');
    });
    const next = queue.run('a', async () => 2);
    await expect(failed).rejects.toThrow('boom');
    await expect(next).resolves.toBe(2);
    await new Promise((r) => setImmediate(r));
    expect(queue.size).toBe(0);
  });
});
