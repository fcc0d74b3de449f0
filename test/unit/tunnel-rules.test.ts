/**
 * The gateway tunnel's pure parts: who may speak for a client request, the one wake
 * de-duplicator, the one route to a running actor, and the hibernation registry's rows.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Queryable } from '../../src/db/pool.js';
import { ActorDestroyed, ActorTimeout, NotHosted, RunnerUnreachable } from '../../src/errors.js';
import { ActorRouter } from '../../src/gateway/actor-router.js';
import type { ActorWatch, RunningActor, WaitOptions } from '../../src/gateway/actor-watch.js';
import { HibernationRegistry } from '../../src/gateway/hibernation-registry.js';
import { judgeRunnerFrame, mayReportRestored, type SpeakingRunner } from '../../src/gateway/speaks-for.js';
import { Waker } from '../../src/gateway/wakes.js';
import { createLogger } from '../../src/log.js';
import type { RunnerTunnelFrame, RunnerTunnelMessage } from '../../src/protocol/runner-protocol.js';

const log = createLogger('test', 'silent');
const actorId = randomUUID();

describe('a runner speaks only for its own connections', () => {
  /** Runner r-1, to which this gateway delivered the start of generation 2. */
  const runner: SpeakingRunner = { runnerId: 'r-1', startedHere: (a, g) => a === actorId && g === 2 };
  const frame = (message: RunnerTunnelMessage, generation = 1, forActor = actorId): RunnerTunnelFrame => ({
    type: 'tunnel',
    requestId: randomUUID(),
    actorId: forActor,
    generation,
    message,
  });
  const ack: RunnerTunnelMessage = { kind: 'wsAck', index: 1 };
  const close: RunnerTunnelMessage = { kind: 'wsClose', code: 4000, reason: 'x' };
  const accepted: RunnerTunnelMessage = { kind: 'wsOpenAck', hibernatable: true };

  it('is heard about a request attached to it, for the actor the request is for', () => {
    expect(judgeRunnerFrame(runner, frame(ack), { actorId, runnerId: 'r-1' })).toBe('take');
    expect(
      judgeRunnerFrame(runner, frame({ kind: 'wsMessage', seq: 1, data: 'hi', binary: false }), {
        actorId,
        runnerId: 'r-1',
      }),
    ).toBe('take');
    expect(judgeRunnerFrame(runner, frame(ack, 1, randomUUID()), { actorId, runnerId: 'r-1' })).toBe('drop');
  });

  it('is not heard about a request attached elsewhere, or hibernating', () => {
    expect(judgeRunnerFrame(runner, frame(ack), { actorId, runnerId: 'r-2' })).toBe('drop');
    expect(
      judgeRunnerFrame(runner, frame({ kind: 'wsMessage', seq: 1, data: 'forged', binary: false }), {
        actorId,
        runnerId: null,
      }),
    ).toBe('drop');
    expect(judgeRunnerFrame(runner, frame(close), { actorId, runnerId: 'r-2' })).toBe('drop');
    expect(judgeRunnerFrame(runner, frame({ kind: 'notHosted', message: 'x' }), { actorId, runnerId: 'r-2' })).toBe(
      'drop',
    );
  });

  it('may close a request from the start this gateway gave it (L\\M), and nothing more', () => {
    expect(judgeRunnerFrame(runner, frame(close, 2), { actorId, runnerId: null })).toBe('take');
    expect(judgeRunnerFrame(runner, frame(ack, 2), { actorId, runnerId: null })).toBe('drop');
    expect(judgeRunnerFrame(runner, frame(close, 2, randomUUID()), { actorId, runnerId: null })).toBe('drop');
  });

  it('hears a close for an acceptance whose client has gone, if the start was given to it', () => {
    expect(judgeRunnerFrame(runner, frame(accepted, 2), undefined)).toBe('closeOrphan');
    expect(judgeRunnerFrame(runner, frame(accepted, 1), undefined)).toBe('drop');
    expect(judgeRunnerFrame(runner, frame(ack, 2), undefined)).toBe('drop');
  });

  it('hears frames and closes, nothing else, from the stopping generation of a hibernating socket (H9)', () => {
    const held = {
      actorId,
      runnerId: null,
      takesOutputFrom: (runnerId: string, generation: number) => runnerId === 'r-1' && generation === 1,
    };
    const out: RunnerTunnelMessage = { kind: 'wsMessage', seq: 3, data: 'bye', binary: false };
    expect(judgeRunnerFrame(runner, frame(out, 1), held)).toBe('take');
    expect(judgeRunnerFrame(runner, frame(close, 1), held)).toBe('take');
    expect(judgeRunnerFrame(runner, frame(ack, 1), held)).toBe('drop');
    expect(judgeRunnerFrame(runner, frame(out, 3), held)).toBe('drop');
  });

  it('reports what a start restored only for a start given to it', () => {
    expect(mayReportRestored(runner, actorId, 2)).toBe(true);
    expect(mayReportRestored(runner, actorId, 3)).toBe(false);
  });
});

describe('Waker', () => {
  const INTERVAL = 1000;
  function waker(signal: (actorId: string) => Promise<unknown> = async () => true) {
    const woken: string[] = [];
    const w = new Waker({
      signal,
      onWake: (id, trigger) => woken.push(`${id}:${trigger}`),
      minIntervalMs: INTERVAL,
      log,
    });
    return { w, woken };
  }
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends one wake per actor until its state changes, whoever asks', async () => {
    const { w, woken } = waker();
    w.wake('a', 'http');
    w.wake('a', 'websocket');
    w.wake('b', 'websocket');
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(woken).toEqual(['a:http', 'b:websocket']);
    w.onNotice('a', 'sleeping');
    w.wake('a', 'websocket');
    w.wake('b', 'http');
    await vi.advanceTimersByTimeAsync(0);
    expect(woken).toEqual(['a:http', 'b:websocket', 'a:websocket']);
  });

  it('rate-limits wakes per actor: a wake within the interval is deferred to its end, not dropped', async () => {
    const signal = vi.fn(async () => true);
    const { w } = waker(signal);
    w.wake('a', 'http');
    w.onNotice('a', 'sleeping');
    w.wake('a', 'websocket');
    w.onNotice('a', 'sleeping');
    w.wake('a', 'websocket');
    w.wake('b', 'http');
    expect(signal.mock.calls).toEqual([['a'], ['b']]);
    await vi.advanceTimersByTimeAsync(INTERVAL - 1);
    expect(signal).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(signal.mock.calls).toEqual([['a'], ['b'], ['a']]);
  });

  it('does not wake again on the notices of the start a wake caused', async () => {
    const { w, woken } = waker();
    w.wake('a', 'websocket');
    for (const state of ['allocating', 'starting', 'running'] as const) {
      w.onNotice('a', state);
      w.wake('a', 'websocket');
    }
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(woken).toEqual(['a:websocket']);
    w.onNotice('a', 'stopping');
    w.wake('a', 'websocket');
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(woken).toEqual(['a:websocket', 'a:websocket']);
  });

  it('records a wake only once its signal went out', async () => {
    let sent!: () => void;
    const { w, woken } = waker(() => new Promise<void>((resolve) => (sent = resolve)));
    w.wake('a', 'http');
    await vi.advanceTimersByTimeAsync(0);
    expect(woken).toEqual([]);
    sent();
    await vi.advanceTimersByTimeAsync(0);
    expect(woken).toEqual(['a:http']);
  });

  it('lets every actor be woken again once notices may have been missed', async () => {
    const { w, woken } = waker();
    w.wake('a', 'http');
    w.onReconnect();
    w.wake('a', 'http');
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(woken).toHaveLength(2);
  });

  it('lets the next wake through when a signal failed, and records none', async () => {
    const signal = vi.fn(async () => {
      throw new Error('temporal down');
    });
    const { w, woken } = waker(signal);
    w.wake('a', 'http');
    await vi.advanceTimersByTimeAsync(INTERVAL);
    w.wake('a', 'http');
    expect(signal).toHaveBeenCalledTimes(2);
    expect(woken).toEqual([]);
  });
});

describe('ActorRouter', () => {
  const running = (generation: number): RunningActor =>
    ({
      actorId,
      name: 'chat',
      key: null,
      state: 'running',
      generation,
      runnerId: `r-${generation}`,
    }) as unknown as RunningActor;

  /** A watch that answers each wait from a script, and records what each wait asked for. */
  function watchOf(answers: (RunningActor | Error)[]) {
    const waits: WaitOptions[] = [];
    const watch = {
      waitUntilRunning: async (_id: string, options: WaitOptions) => {
        waits.push(options);
        const next = answers.shift()!;
        if (next instanceof Error) throw next;
        return next;
      },
    } as unknown as ActorWatch;
    return { watch, waits };
  }
  const waker = new Waker({ signal: async () => true, onWake: () => undefined, minIntervalMs: 0, log });
  const TIMING = { wakeTimeoutMs: 1000, runnerLostMs: 500 };
  const noRunnerBack = () => Promise.resolve();

  it('waits for a runner that is away (moving gateways), then sends to the same generation again', async () => {
    const { watch, waits } = watchOf([running(1), running(1)]);
    const asked: { runnerId: string; untilMs: number }[] = [];
    const runnerBack = async (runnerId: string, untilMs: number) => void asked.push({ runnerId, untilMs });
    const router = new ActorRouter(watch, waker, runnerBack, TIMING, log);
    let tries = 0;
    const answer = await router.route(actorId, 'http', async () => {
      if (++tries === 1) throw new RunnerUnreachable('away');
      return 'ok';
    });
    expect(answer).toBe('ok');
    expect(asked.map((a) => a.runnerId)).toEqual(['r-1']);
    // At most the runner-lost threshold: past it the actor moves and the registry says where.
    expect(asked[0]!.untilMs).toBeLessThanOrEqual(Date.now() + TIMING.runnerLostMs);
    expect(waits.map((w) => w.staleGeneration)).toEqual([undefined, undefined]);
  });

  it('asks no wake for a request that no longer needs the actor', async () => {
    const wakes: string[] = [];
    const counting = { wake: (id: string) => void wakes.push(id) } as unknown as Waker;
    const { watch, waits } = watchOf([running(1)]);
    let wanted = true;
    await new ActorRouter(watch, counting, noRunnerBack, TIMING, log).route(
      actorId,
      'websocket',
      async () => 'ok',
      () => wanted,
    );
    waits[0]!.wake();
    wanted = false; // e.g. a socket whose late open acknowledgement settled it
    waits[0]!.wake();
    expect(wakes).toEqual([actorId]);
  });

  it('gives up on an away runner at the route deadline', async () => {
    const { watch } = watchOf([running(1), running(1), running(1), running(1)]);
    const router = new ActorRouter(
      watch,
      waker,
      (_r, untilMs) => new Promise((r) => setTimeout(r, untilMs - Date.now())),
      {
        wakeTimeoutMs: 50,
        runnerLostMs: 30,
      },
      log,
    );
    await expect(
      router.route(actorId, 'http', async () => Promise.reject(new RunnerUnreachable('away'))),
    ).rejects.toBeInstanceOf(RunnerUnreachable);
  });

  it('sends to the running generation, and on NotHosted waits for a newer one', async () => {
    const { watch, waits } = watchOf([running(1), running(2)]);
    const router = new ActorRouter(watch, waker, noRunnerBack, TIMING, log);
    const sent: number[] = [];
    const answer = await router.route(actorId, 'http', async (actor) => {
      sent.push(actor.generation);
      if (actor.generation === 1) throw new NotHosted('moved');
      return 'ok';
    });
    expect(answer).toBe('ok');
    expect(sent).toEqual([1, 2]);
    expect(waits.map((w) => w.staleGeneration)).toEqual([undefined, 1]);
    expect(waits[0]!.deadline).toBe(waits[1]!.deadline); // one deadline for the whole route
  });

  it('passes every other error through, catalog errors as they are', async () => {
    const { watch } = watchOf([new ActorDestroyed(actorId)]);
    await expect(
      new ActorRouter(watch, waker, noRunnerBack, TIMING, log).route(actorId, 'http', async () => 'never'),
    ).rejects.toBeInstanceOf(ActorDestroyed);
    const { watch: again } = watchOf([running(1)]);
    const timeout = new ActorTimeout('slow');
    await expect(
      new ActorRouter(again, waker, noRunnerBack, TIMING, log).route(actorId, 'http', async () =>
        Promise.reject(timeout),
      ),
    ).rejects.toBe(timeout);
  });
});

describe('HibernationRegistry', () => {
  function db() {
    const queries: string[] = [];
    const fake = {
      query: async (sql: string) => (queries.push(sql.trim().split(/\s+/)[0]!), { rows: [], rowCount: 1 }),
    } as unknown as Queryable;
    return { fake, queries };
  }

  it('deletes a row only if it wrote it, and only once (H1, H4)', async () => {
    const { fake, queries } = db();
    const registry = new HibernationRegistry(fake, 'gw-1');
    await registry.unregister('never-registered', log);
    expect(queries).toEqual([]);
    await registry.register('req-1', actorId);
    await registry.unregister('req-1', log);
    await registry.unregister('req-1', log);
    expect(queries).toEqual(['INSERT', 'DELETE']);
  });

  it('keeps no claim on a row it could not write', async () => {
    const queries: string[] = [];
    const insertFails = {
      query: async (sql: string) => {
        queries.push(sql.trim().split(/\s+/)[0]!);
        if (sql.trim().startsWith('INSERT')) throw new Error('db down');
        return { rows: [], rowCount: 1 };
      },
    } as unknown as Queryable;
    const registry = new HibernationRegistry(insertFails, 'gw-1');
    await expect(registry.register('req-1', actorId)).rejects.toThrow('db down');
    await registry.unregister('req-1', log);
    expect(queries).toEqual(['INSERT']);
  });
});
