/**
 * One handler, one transaction (DESIGN §3, H9): its state, its `ctx.kv` writes, its processed
 * index and its outbound frames are written together, frames leave only after that write, and
 * the outbox is trimmed on the gateway's acknowledgement. And resting in place (DESIGN §4.1):
 * the instance is dropped once idle and quiet, and the next piece of work rebuilds it.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/log.js';
import type { KvOp, RunnerToGateway } from '../../src/protocol/runner-protocol.js';
import { ActorInstance, type IdleTimes, type InstanceHost } from '../../src/runner/actor-instance.js';
import { defineActor, type ActorContext, type AnyActorDefinition } from '../../src/runner/define-actor.js';
import { RestCache } from '../../src/runner/rest-cache.js';
import { waitFor } from '../harness/wait.js';

type Write = Extract<KvOp, { kind: 'write' }>;

/** An instance on a fake host that records KV writes and frames, in the order they happen. */
async function started(
  definition: AnyActorDefinition,
  idle: IdleTimes = { restAfterMs: 60_000, sleepAfterMs: 60_000 },
  restCacheBytes = 0,
) {
  const log: (string | Write)[] = [];
  /** The keys of every KV read, in order. */
  const reads: string[] = [];
  const sent: RunnerToGateway[] = [];
  const events: string[] = [];
  const kv = new Map<string, string>();
  let failWrites = 0;
  /** The runner's link to the gateway: while down, frames are dropped (send answers false). */
  const link = { connected: true };
  /** Every frame the instance tried to send, delivered or not. */
  const attempted: RunnerToGateway[] = [];
  const host: InstanceHost = {
    emit: (_actorId, _generation, event) => void events.push(event.kind),
    kv: (_actorId, _generation, op) => {
      if (op.kind === 'write') {
        if (failWrites > 0 && failWrites--) return Promise.reject(new Error('kv write failed: kv operation failed'));
        log.push(op);
        for (const { key, value } of op.put) kv.set(key, value);
        for (const key of op.delete) kv.delete(key);
        for (const { prefix, through } of op.trim ?? [])
          for (const key of [...kv.keys()]) if (key.startsWith(prefix) && key <= through) kv.delete(key);
        return Promise.resolve([]);
      }
      if (op.kind === 'get') reads.push(...op.keys);
      if (op.kind === 'get') return Promise.resolve(op.keys.map((key) => ({ key, value: kv.get(key) ?? null })));
      return Promise.resolve(
        [...kv].filter(([key]) => key.startsWith(op.prefix)).map(([key, value]) => ({ key, value })),
      );
    },
    send: (frame) => {
      attempted.push(frame);
      if (!link.connected) return false;
      sent.push(frame);
      if (frame.type === 'tunnel') log.push(`sent ${frame.message.kind}`);
      return true;
    },
    ended: () => undefined,
    idle,
    restCache: new RestCache(restCacheBytes),
    faults: undefined,
    log: createLogger('test', 'silent'),
  };
  const actorId = randomUUID();
  const requestId = randomUUID();
  const generation = (n: number, hibernating: boolean) =>
    new ActorInstance(
      {
        kind: 'startActor',
        actorId,
        name: definition.name,
        key: null,
        input: null,
        generation: n,
        reason: n === 1 ? 'create' : 'crash',
        hibernatingRequests: hibernating ? [{ gatewayId: 'gw', requestId }] : [],
      },
      definition,
      host,
    );
  const instance = generation(1, false);
  await instance.start();
  await instance.openConnection(requestId, {
    kind: 'wsOpen',
    gatewayId: 'gw',
    path: '/',
    headers: { authorization: 'Bearer x', 'x-room': 'blue' },
    lastIndex: 0,
    lastOutSeq: 0,
    offer: false,
  });
  log.length = 0;
  sent.length = 0;
  const message = (index: number, data: string) =>
    instance.takeMessage(requestId, { kind: 'wsMessage', index, data, binary: false });
  /** The next write fails, committing nothing (Postgres restarting); the ones after it succeed. */
  const failNextWrite = () => void (failWrites = 1);
  /** The next generation, on the same storage, with the connection in its snapshot (a restore). */
  const nextGeneration = async () => {
    const next = generation(2, true);
    await next.start();
    return next;
  };
  return { instance, requestId, log, reads, sent, attempted, kv, events, link, message, failNextWrite, nextGeneration };
}

const decode = (value: string) => Buffer.from(value, 'base64').toString();

describe('an actor handler', () => {
  it('writes state, ctx.kv, the processed index and its frames in one write, and sends the frames after it', async () => {
    const actor = defineActor<{ n: number }>({
      name: 'counter',
      createState: () => ({ n: 0 }),
      hibernatable: true,
      async onMessage(ctx, conn, text) {
        ctx.state.n += 1;
        await ctx.kv.put('seen', String(text));
        expect((await ctx.kv.get('seen'))?.toString()).toBe(String(text)); // read your own write
        conn.send(`n=${ctx.state.n}`);
      },
    });
    const { log, kv, message, requestId } = await started(actor);
    await message(1, 'hello');
    expect(log.map((e) => (typeof e === 'string' ? e : 'write'))).toEqual(['write', 'sent wsMessage', 'sent wsAck']);
    const write = log[0] as Write;
    const keys = write.put.map((p) => p.key);
    expect(keys).toEqual(
      expect.arrayContaining([
        '__dormouse/state',
        `__dormouse/conn/${requestId}`,
        'seen',
        expect.stringMatching(/^__dormouse\/out\//),
      ]),
    );
    const record = JSON.parse(decode(kv.get(`__dormouse/conn/${requestId}`)!)) as {
      lastIndex: number;
      headers: object;
    };
    expect(record.lastIndex).toBe(1);
    expect(record.headers).toEqual({ 'x-room': 'blue' }); // no credentials at rest
  });

  it('after a failed write crashes it, writes nothing more: no index or seq ahead of the outbox (chaos, postgres_restart)', async () => {
    const actor = defineActor<{ n: number }>({
      name: 'chat-like',
      createState: () => ({ n: 0 }),
      hibernatable: true,
      onMessage(ctx, conn) {
        ctx.state.n += 1;
        conn.send(`n=${ctx.state.n}`);
      },
    });
    const { log, kv, message, requestId, failNextWrite } = await started(actor);
    const record = kv.get(`__dormouse/conn/${requestId}`);
    failNextWrite();
    // The first message's write fails and crashes the instance; the second was queued behind it,
    // and Postgres is back (the workflow has not started the next generation yet, so no fence).
    await Promise.all([message(1, 'a'), message(2, 'b')]);
    expect(log).toEqual([]); // no write, no frame, no ack
    expect(kv.get(`__dormouse/conn/${requestId}`)).toBe(record);
  });

  it('commits the processed index with a saveState() made inside the handler', async () => {
    const actor = defineActor<{ n: number }>({
      name: 'saver',
      createState: () => ({ n: 0 }),
      hibernatable: true,
      async onMessage(ctx) {
        ctx.state.n += 1;
        await ctx.saveState();
      },
    });
    const { log, message, requestId } = await started(actor);
    await message(1, 'x');
    const first = log[0] as Write;
    const put = new Map(first.put.map((p) => [p.key, decode(p.value)]));
    expect(JSON.parse(put.get('__dormouse/state')!)).toEqual({ n: 1 });
    expect(JSON.parse(put.get(`__dormouse/conn/${requestId}`)!)).toMatchObject({ lastIndex: 1 });
  });

  it('trims the outbox on acknowledgement, in one write, keeping the newest frame', async () => {
    const actor = defineActor({
      name: 'chatty',
      hibernatable: true,
      onMessage(_ctx, conn) {
        for (let i = 0; i < 5; i++) conn.send(`f${i}`);
      },
    });
    const { instance, kv, log, message, requestId, sent } = await started(actor);
    await message(1, 'go');
    const seqs = sent.flatMap((f) => (f.type === 'tunnel' && f.message.kind === 'wsMessage' ? [f.message.seq] : []));
    expect(seqs).toEqual([1, 2, 3, 4, 5]);
    const outKeys = () => [...kv.keys()].filter((k) => k.startsWith('__dormouse/out/')).length;
    expect(outKeys()).toBe(5);
    const writes = log.filter((e) => typeof e !== 'string').length;
    instance.outAcked(requestId, 5);
    await waitFor(() => outKeys() === 1, { timeoutMs: 2_000, message: 'the outbox trimmed' });
    expect(log.filter((e) => typeof e !== 'string').length).toBe(writes + 1);
    await instance.stop('stop');
  });

  it('drops an unreadable outbox frame at restore instead of crashing every generation on it', async () => {
    const actor = defineActor({
      name: 'chatty',
      hibernatable: true,
      onMessage(_ctx, conn) {
        for (let i = 0; i < 3; i++) conn.send(`f${i}`);
      },
    });
    const { kv, log, sent, events, message, requestId, nextGeneration } = await started(actor);
    await message(1, 'go');
    const corrupt = `__dormouse/out/${requestId}/${String(2).padStart(16, '0')}`;
    expect(kv.has(corrupt)).toBe(true);
    kv.set(corrupt, Buffer.from('not json').toString('base64'));
    sent.length = 0;
    log.length = 0;

    const next = await nextGeneration();
    expect(events.at(-1)).toBe('running');
    const resent = sent.flatMap((f) => (f.type === 'tunnel' && f.message.kind === 'wsMessage' ? [f.message.seq] : []));
    expect(resent).toEqual([1, 3]); // the gateway meets the hole and closes the client with 4409
    expect(kv.has(corrupt)).toBe(false);
    await next.stop('stop');
  });

  it('sends a close it made while the runner was disconnected once the runner is back', async () => {
    const actor = defineActor({
      name: 'closer',
      hibernatable: true,
      onMessage(_ctx, conn) {
        conn.close(4321, 'done with you');
      },
    });
    const { instance, sent, attempted, link, message } = await started(actor);
    const isClose = (f: RunnerToGateway) => f.type === 'tunnel' && f.message.kind === 'wsClose';
    link.connected = false;
    await message(1, 'bye');
    await waitFor(() => attempted.some(isClose), { timeoutMs: 2_000, message: 'the close tried' });
    expect(sent.some(isClose)).toBe(false);
    link.connected = true;
    instance.resendOutbound(); // what the runner does after its reconnect
    const closes = sent.flatMap((f) => (f.type === 'tunnel' && f.message.kind === 'wsClose' ? [f.message] : []));
    expect(closes).toEqual([{ kind: 'wsClose', code: 4321, reason: 'done with you' }]);
    instance.resendOutbound();
    expect(sent.filter(isClose)).toHaveLength(1);
  });
});

describe('an actor resting in place', () => {
  const RESTS = { restAfterMs: 30, sleepAfterMs: 60_000 };
  const counter = (onStop?: () => void) =>
    defineActor<{ n: number }>({
      name: 'counter',
      createState: () => ({ n: 0 }),
      hibernatable: true,
      async onConnect(_ctx, conn) {
        await conn.setAttachment({ name: 'ann' });
      },
      onMessage(ctx, conn) {
        ctx.state.n += 1;
        conn.send(`${(conn.attachment as { name: string }).name} n=${ctx.state.n}`);
      },
      onStop,
    });
  const frames = (sent: RunnerToGateway[]) =>
    sent.flatMap((f) => (f.type === 'tunnel' && f.message.kind === 'wsMessage' ? [f.message.data] : []));
  const acked = (instance: ActorInstance, requestId: string, sent: RunnerToGateway[]) => {
    for (const f of sent)
      if (f.type === 'tunnel' && f.message.kind === 'wsMessage') instance.outAcked(requestId, f.message.seq);
  };

  it('drops its instance after restAfterMs idle and rebuilds it from storage for the next message, same generation', async () => {
    const { instance, requestId, events, reads, sent, message } = await started(counter(), RESTS);
    await message(1, 'a');
    acked(instance, requestId, sent);
    await waitFor(() => events.includes('resting'), { timeoutMs: 5_000, message: 'the actor rested' });
    expect(reads).toEqual([]);

    await message(2, 'b');
    // Reported a moment after the wake, not during it.
    expect(events.at(-1)).toBe('resting');
    await waitFor(() => events.at(-1) === 'active', { timeoutMs: 2_000, message: 'active reported' });
    expect(reads).toEqual(['__dormouse/state']); // one read: its state; the connection's record stayed in memory
    expect(frames(sent)).toEqual(['ann n=1', 'ann n=2']); // state and attachment survived the rest
    expect(sent.at(-1)).toMatchObject({ generation: 1, message: { kind: 'wsAck', index: 2 } });
    expect(instance.isRunning).toBe(true);
    await instance.stop('stop');
  });

  it("with room in the runner's rest cache, wakes without reading its state back", async () => {
    const { instance, requestId, events, reads, sent, message } = await started(counter(), RESTS, 1024);
    await message(1, 'a');
    acked(instance, requestId, sent);
    await waitFor(() => events.includes('resting'), { timeoutMs: 5_000, message: 'the actor rested' });
    await message(2, 'b');
    expect(reads).toEqual([]);
    expect(frames(sent)).toEqual(['ann n=1', 'ann n=2']);
    await instance.stop('stop');
  });

  it('reports a rest a second late, and a rest shorter than that not at all', async () => {
    vi.useFakeTimers();
    try {
      const { instance, requestId, events, sent, reads, message } = await started(counter(), RESTS);
      await message(1, 'a');
      acked(instance, requestId, sent);
      await vi.advanceTimersByTimeAsync(RESTS.restAfterMs + 500); // resting for half a second
      await message(2, 'b');
      expect(reads).toEqual(['__dormouse/state']); // it did rest
      acked(instance, requestId, sent);
      await vi.advanceTimersByTimeAsync(500);
      expect(events).toEqual(['running']); // the workflow never heard of that rest
      await vi.advanceTimersByTimeAsync(RESTS.restAfterMs + 1_000);
      expect(events).toEqual(['running', 'resting']);
      await instance.stop('stop');
    } finally {
      vi.useRealTimers();
    }
  });

  it('does not rest while a frame it sent is unacknowledged (its outbox lives in memory too)', async () => {
    vi.useFakeTimers();
    try {
      const { instance, requestId, events, sent, message } = await started(counter(), RESTS);
      await message(1, 'a');
      await vi.advanceTimersByTimeAsync(10 * RESTS.restAfterMs);
      expect(events).not.toContain('resting');
      acked(instance, requestId, sent);
      await vi.advanceTimersByTimeAsync(2 * RESTS.restAfterMs + 1_000); // (reported a second after)
      expect(events.at(-1)).toBe('resting');
      await instance.stop('stop');
    } finally {
      vi.useRealTimers();
    }
  });

  it('a context kept from before the rest neither sends, writes nor reads', async () => {
    let kept: ActorContext | null = null;
    let injected: unknown = null;
    const actor = defineActor({
      name: 'keeper',
      hibernatable: true,
      async onMessage(ctx, _conn, text) {
        if (String(text) !== 'inject') kept = ctx;
        else injected = await (kept as unknown as ActorContext).kv.put('late', 'v').catch((err: unknown) => err);
      },
    });
    const { events, sent, log, message } = await started(actor, RESTS);
    await message(1, 'a');
    await waitFor(() => events.includes('resting'), { timeoutMs: 5_000, message: 'the actor rested' });
    const before = { sent: sent.length, writes: log.length };
    const old = kept as unknown as ActorContext;
    old.broadcast('late');
    expect(old.connections()).toEqual([]);
    await expect(old.kv.put('k', 'v')).rejects.toThrow(/dropped/);
    await expect(old.saveState()).rejects.toThrow(/dropped/);
    expect({ sent: sent.length, writes: log.length }).toEqual(before);
    expect(events.at(-1)).toBe('resting'); // nothing woke it

    // Nor, while the rebuilt instance runs a handler, into that handler's write.
    await message(2, 'inject');
    expect(injected).toBeInstanceOf(Error);
    const putKeys = log.flatMap((e) => (typeof e === 'string' ? [] : e.put.map((p) => p.key)));
    expect(putKeys).not.toContain('late');
  });

  it('stops without being rebuilt: no read, no onStop, reported stopped', async () => {
    let stops = 0;
    const { instance, requestId, events, reads, sent, message } = await started(
      counter(() => void stops++),
      RESTS,
    );
    await message(1, 'a');
    acked(instance, requestId, sent);
    await waitFor(() => events.includes('resting'), { timeoutMs: 5_000, message: 'the actor rested' });
    await instance.stop('sleep');
    expect({ reads, stops, last: events.at(-1) }).toEqual({ reads: [], stops: 0, last: 'stopped' });
  });

  it('counts client messages as activity: a chatting actor neither rests nor sleeps', async () => {
    vi.useFakeTimers();
    try {
      const { instance, requestId, events, sent, message } = await started(counter(), {
        restAfterMs: 1_000,
        sleepAfterMs: 3_000,
      });
      for (let i = 1; i <= 10; i++) {
        await message(i, `m${i}`);
        acked(instance, requestId, sent);
        await vi.advanceTimersByTimeAsync(900);
      }
      expect(events).toEqual(['running']);
      await vi.advanceTimersByTimeAsync(3_000);
      expect(events).toEqual(['running', 'resting', 'intent']);
      await instance.stop('stop');
    } finally {
      vi.useRealTimers();
    }
  });

  it("idle times beyond setTimeout's range (~24.8 days) wait, instead of firing at once", async () => {
    vi.useFakeTimers();
    try {
      const MONTH = 30 * 24 * 3600_000;
      const { instance, events } = await started(counter(), { restAfterMs: MONTH, sleepAfterMs: 2 * MONTH });
      await vi.advanceTimersByTimeAsync(60_000);
      expect(events).toEqual(['running']);
      await instance.stop('stop');
    } finally {
      vi.useRealTimers();
    }
  });

  it('a message handler that throws: the message is processed and acknowledged, then the actor crashes', async () => {
    const actor = defineActor<{ n: number }>({
      name: 'thrower',
      createState: () => ({ n: 0 }),
      hibernatable: true,
      onMessage(ctx) {
        ctx.state.n += 1;
        throw new Error('handler bug');
      },
    });
    const { instance, events, sent, kv, message } = await started(actor, RESTS);
    await message(1, 'a');
    expect(sent.at(-1)).toMatchObject({ message: { kind: 'wsAck', index: 1 } });
    expect(JSON.parse(decode(kv.get('__dormouse/state')!))).toEqual({ n: 1 });
    expect(events.at(-1)).toBe('stopped');
    expect(instance.isRunning).toBe(false);
  });
});

describe("a runner's rest cache", () => {
  it('keeps states within its budget, the longest-resting leaving first, each for its own generation', () => {
    const cache = new RestCache(10);
    cache.keep('a', 1, '"aaaa"'); // 6 bytes
    cache.keep('b', 1, '"bb"'); // 4: 10 in all
    expect(cache.size).toEqual({ entries: 2, bytes: 10 });
    cache.keep('c', 1, '"c"'); // 3 more: a, resting longest, goes
    expect(cache.take('a', 1)).toBeUndefined();
    expect(cache.take('b', 2)).toBeUndefined(); // another generation's: not this one's state (and gone)
    expect(cache.take('c', 1)).toBe('"c"');
    expect(cache.size).toEqual({ entries: 0, bytes: 0 });
    cache.keep('d', 1, '"too large for the budget"');
    expect(cache.size).toEqual({ entries: 0, bytes: 0 });
  });
});
