/**
 * One handler, one transaction (DESIGN §3, H9): its state, its `ctx.kv` writes, its processed
 * index and its outbound frames are written together, frames leave only after that write, and
 * the outbox is trimmed on the gateway's acknowledgement.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import type { KvOp, RunnerToGateway } from '../../src/protocol/runner-protocol.js';
import { ActorInstance, type InstanceHost } from '../../src/runner/actor-instance.js';
import { defineActor, type AnyActorDefinition } from '../../src/runner/define-actor.js';
import { waitFor } from '../harness/wait.js';

type Write = Extract<KvOp, { kind: 'write' }>;

/** An instance on a fake host that records KV writes and frames, in the order they happen. */
async function started(definition: AnyActorDefinition) {
  const log: (string | Write)[] = [];
  const sent: RunnerToGateway[] = [];
  const kv = new Map<string, string>();
  const host: InstanceHost = {
    emit: () => undefined,
    kv: (_actorId, _generation, op) => {
      if (op.kind === 'write') {
        log.push(op);
        for (const { key, value } of op.put) kv.set(key, value);
        for (const key of op.delete) kv.delete(key);
        for (const { prefix, through } of op.trim ?? [])
          for (const key of [...kv.keys()]) if (key.startsWith(prefix) && key <= through) kv.delete(key);
        return Promise.resolve([]);
      }
      if (op.kind === 'get') return Promise.resolve(op.keys.map((key) => ({ key, value: kv.get(key) ?? null })));
      return Promise.resolve(
        [...kv].filter(([key]) => key.startsWith(op.prefix)).map(([key, value]) => ({ key, value })),
      );
    },
    send: (frame) => {
      sent.push(frame);
      if (frame.type === 'tunnel') log.push(`sent ${frame.message.kind}`);
    },
    ended: () => undefined,
    defaultSleepAfterMs: 60_000,
    faults: undefined,
    log: createLogger('test', 'silent'),
  };
  const actorId = randomUUID();
  const instance = new ActorInstance(
    {
      kind: 'startActor',
      actorId,
      name: definition.name,
      key: null,
      input: null,
      generation: 1,
      reason: 'create',
      hibernatingRequests: [],
    },
    definition,
    host,
  );
  await instance.start();
  const requestId = randomUUID();
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
  return { instance, requestId, log, sent, kv, message };
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
});
