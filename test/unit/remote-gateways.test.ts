/**
 * RemoteGateways: where runners are, who holds requests, and what goes to one gateway or to all.
 * The bus and the registry are fakes; what crosses real NATS is test/many-gateways.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Queryable } from '../../src/db/pool.js';
import { NotHosted, RunnerUnreachable } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { busMessage, parseBus, type BusHttpReply, type BusMessage } from '../../src/protocol/gateway-bus.js';
import type { GatewayTunnelFrame, RunnerTunnelFrame } from '../../src/protocol/runner-protocol.js';
import type { NatsBus } from '../../src/gateway/nats-bus.js';
import { RemoteGateways } from '../../src/gateway/remote-gateways.js';

const log = createLogger('test', 'silent');
const runnerId = randomUUID();
const actorId = randomUUID();

function setup(registry: Record<string, string | null> = {}, reply?: BusHttpReply) {
  const sent: { to: string; message: BusMessage }[] = [];
  let lookups = 0;
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const bus = {
    send: (to: string, message: BusMessage) => sent.push({ to, message }),
    broadcast: (message: BusMessage) => sent.push({ to: '*', message }),
    request: () => Promise.resolve(reply),
  } as unknown as NatsBus;
  const db = {
    query: async (_sql: string, params: string[]) => {
      lookups++;
      await gate;
      const gatewayId = registry[params[0]!];
      return { rows: gatewayId === undefined ? [] : [{ gateway_id: gatewayId }] };
    },
  } as unknown as Queryable;
  const remote = new RemoteGateways(bus, db, 'gw-self', log);
  return { remote, sent, release, lookups: () => lookups };
}

const toActor = (requestId: string, text: string): GatewayTunnelFrame => ({
  type: 'tunnel',
  requestId,
  actorId,
  generation: 1,
  message: { kind: 'wsMessage', index: 1, data: text, binary: false },
});
const fromActor = (requestId: string): RunnerTunnelFrame => ({
  type: 'tunnel',
  requestId,
  actorId,
  generation: 1,
  message: { kind: 'wsMessage', seq: 1, data: 'hi', binary: false },
});
const speaker = { runnerId, startedHere: () => true };

describe('RemoteGateways', () => {
  it('holds frames for a runner while the registry is read, then sends them in order to its gateway', async () => {
    const { remote, sent, release, lookups } = setup({ [runnerId]: 'gw-b' });
    const a = randomUUID();
    remote.sendToRunner(runnerId, toActor(a, 'one'));
    remote.sendToRunner(runnerId, toActor(a, 'two'));
    expect(sent).toEqual([]);
    release();
    await expect.poll(() => sent.length).toBe(2);
    expect(lookups()).toBe(1);
    expect(sent.map((s) => s.to)).toEqual(['gw-b', 'gw-b']);
    expect(sent.map((s) => (s.message as { frame: GatewayTunnelFrame }).frame.message)).toMatchObject([
      { data: 'one' },
      { data: 'two' },
    ]);
    remote.sendToRunner(runnerId, toActor(a, 'three')); // known now: no second read
    expect(sent[2]).toMatchObject({ to: 'gw-b', message: { type: 'toRunner', from: 'gw-self', runnerId } });
    expect(lookups()).toBe(1);
  });

  it('drops frames for a runner connected nowhere', async () => {
    const { remote, sent, release } = setup({ [runnerId]: null });
    release();
    remote.sendToRunner(runnerId, toActor(randomUUID(), 'lost'));
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(sent).toEqual([]);
  });

  it('follows announcements: a late "left" from the old gateway does not undo a move', () => {
    const { remote, sent } = setup();
    remote.runnerAt(runnerId, 'gw-b');
    remote.runnerAt(runnerId, 'gw-c');
    remote.runnerLeft(runnerId, 'gw-b');
    remote.sendToRunner(runnerId, toActor(randomUUID(), 'x'));
    expect(sent[0]!.to).toBe('gw-c');
  });

  it('sends a runner frame to the gateway holding its request, to all when unknown, and keeps its own', () => {
    const { remote, sent } = setup();
    const held = randomUUID();
    const mine = randomUUID();
    const unknown = randomUUID();
    remote.holds(held, 'gw-a');
    remote.holds(mine, 'gw-self');
    expect(remote.forwardFromRunner(speaker, fromActor(held))).toBe(true);
    expect(remote.forwardFromRunner(speaker, fromActor(unknown))).toBe(true);
    expect(remote.forwardFromRunner(speaker, fromActor(mine))).toBe(false);
    expect(sent.map((s) => s.to)).toEqual(['gw-a', '*']);
    expect(sent[0]!.message).toMatchObject({ type: 'fromRunner', runnerId, startedHere: true });
    remote.released(held);
    remote.forwardFromRunner(speaker, fromActor(held));
    expect(sent[2]!.to).toBe('*');
  });

  it('learns the holders of restored requests from the start’s snapshot and tells every gateway', () => {
    const { remote, sent } = setup();
    const requestId = randomUUID();
    const report = { type: 'wsRestored' as const, actorId, generation: 2, requests: [{ requestId, lastIndex: 3 }] };
    remote.restored(runnerId, report, new Map([[requestId, 'gw-a']]));
    expect(sent[0]).toEqual({
      to: '*',
      message: { type: 'restored', runnerId, report, holders: { [requestId]: 'gw-a' } },
    });
    remote.forwardFromRunner(speaker, fromActor(requestId));
    expect(sent[1]!.to).toBe('gw-a');
  });

  it('turns the runner gateway’s HTTP reply into a response or the error the route expects', async () => {
    const ok = setup(
      {},
      { ok: true, response: { kind: 'httpResponse', status: 201, headers: { a: 'b' }, body: 'aGk=' } },
    );
    ok.remote.runnerAt(runnerId, 'gw-b');
    const request = { method: 'GET', path: '/', headers: {}, body: null };
    const actor = { actorId, generation: 1, runnerId };
    expect(await ok.remote.request(actor, request, 1000)).toEqual({
      status: 201,
      headers: { a: 'b' },
      body: Buffer.from('hi'),
    });
    const moved = setup({}, { ok: false, error: 'notHosted', message: 'gone' });
    moved.remote.runnerAt(runnerId, 'gw-b');
    await expect(moved.remote.request(actor, request, 1000)).rejects.toBeInstanceOf(NotHosted);
    const away = setup({}, { ok: false, error: 'unreachable', message: 'not here' });
    away.remote.runnerAt(runnerId, 'gw-b');
    await expect(away.remote.request(actor, request, 1000)).rejects.toBeInstanceOf(RunnerUnreachable);
  });

  it('the bus schema refuses what is not a bus message', () => {
    const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    expect(parseBus(busMessage, bytes({ type: 'toRunner', from: 'gw', runnerId, frame: { nope: 1 } })).ok).toBe(false);
    expect(parseBus(busMessage, new TextEncoder().encode('{not json')).ok).toBe(false);
    expect(parseBus(busMessage, bytes({ type: 'runnerConnected', runnerId, gatewayId: 'gw-b' }))).toEqual({
      ok: true,
      message: { type: 'runnerConnected', runnerId, gatewayId: 'gw-b' },
    });
  });
});
