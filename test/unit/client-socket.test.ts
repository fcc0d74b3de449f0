/** A client socket's phases change only through its transitions, and each sends what it must. */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ClientSocket, type ClientWs } from '../../src/gateway/client-socket.js';
import { createLogger } from '../../src/log.js';
import type { GatewayToRunner, GatewayTunnelMessage } from '../../src/protocol/runner-protocol.js';

const actorId = randomUUID();

/** A socket on a fake client, whose frames to runners are recorded. */
function socket(limits = { pendingFrames: 10, pendingBytes: 1000 }) {
  const toRunners: { runnerId: string; frame: GatewayToRunner }[] = [];
  const toClient: unknown[] = [];
  const closes: { code: number; reason: string }[] = [];
  const ws = {
    readyState: 1,
    OPEN: 1,
    CONNECTING: 0,
    send: (data: unknown) => void toClient.push(data),
    close: (code: number, reason: string) => {
      closes.push({ code, reason });
      ws.readyState = 3;
    },
  };
  const host = {
    gatewayId: 'gw-1',
    log: createLogger('test', 'silent'),
    toRunners,
    sendToRunner: (runnerId: string, frame: GatewayToRunner) => toRunners.push({ runnerId, frame }) > 0,
  };
  const s = new ClientSocket(actorId, '/room', { a: 'b' }, ws as unknown as ClientWs, host, limits);
  /** The tunnel messages sent, as `runner/generation:kind[index]`. */
  const sent = () =>
    toRunners.map(({ runnerId, frame }) => {
      if (frame.type !== 'tunnel') return frame.type;
      expect(frame).toMatchObject({ requestId: s.requestId, actorId });
      const m: GatewayTunnelMessage = frame.message;
      return `${runnerId}/${frame.generation}:${m.kind}${m.kind === 'wsMessage' ? m.index : ''}`;
    });
  return { s, sent, toClient, closes, host };
}

describe('ClientSocket', () => {
  it('opens, sends messages while active, keeps them while hibernating, and resends them on restore', async () => {
    const { s, sent } = socket();
    expect(s.phase).toBe('opening');
    s.takeClientMessage(Buffer.from('early'), false); // kept until the actor holds the socket
    const opened = s.requestOpen('r-1', 1, false);
    s.acceptedAs(true);
    s.activate('r-1', 1, 0);
    s.settleOpen('accepted');
    expect(await opened).toBe('accepted');
    expect(s).toMatchObject({ phase: 'active', hibernatable: true, runnerId: 'r-1', generation: 1 });
    s.takeClientMessage(Buffer.from('two'), false);
    s.acknowledge(1);
    expect(s.pendingSummary.frames).toBe(1);

    s.hibernate();
    expect(s).toMatchObject({ phase: 'hibernating', runnerId: null });
    s.takeClientMessage(Buffer.from('three'), false);
    s.activate('r-2', 2, 2); // restored: the actor had processed up to 2
    expect(s.lastAcked).toBe(2);
    expect(sent()).toEqual(['r-1/1:wsOpen', 'r-1/1:wsMessage1', 'r-1/1:wsMessage2', 'r-2/2:wsMessage3']);
  });

  it('keeps an open it could not send (its runner is away), and sends it again when asked', async () => {
    const down = { connected: false };
    const { s, sent, host } = socket();
    host.sendToRunner = (runnerId, frame) => down.connected && host.toRunners.push({ runnerId, frame }) > 0;
    const outcome = s.requestOpen('r-1', 1, false);
    expect(sent()).toEqual([]);
    down.connected = true;
    s.resendOpen(); // the runner connected again, here or on another gateway
    expect(sent()).toEqual(['r-1/1:wsOpen']);
    s.settleOpen('accepted');
    expect(await outcome).toBe('accepted');
    s.resendOpen(); // settled: nothing more goes
    expect(sent()).toEqual(['r-1/1:wsOpen']);
  });

  it('offers a hibernating socket with its last acknowledged index', () => {
    const { s, sent } = socket();
    s.activate('r-1', 1, 0);
    s.takeClientMessage(Buffer.from('one'), false);
    s.acknowledge(1);
    s.hibernate();
    void s.requestOpen('r-2', 2, true);
    expect(s.phase).toBe('opening');
    expect(sent()).toEqual(['r-1/1:wsMessage1', 'r-2/2:wsOpen']);
  });

  it('stays closed: no transition revives it, and a waiting open learns it closed', async () => {
    const { s, closes } = socket();
    const opened = s.requestOpen('r-1', 1, false);
    s.closeClient(4503, 'gone');
    expect(await opened).toBe('closed');
    s.activate('r-1', 1, 0);
    s.hibernate();
    expect(await s.requestOpen('r-1', 1, false)).toBe('closed');
    s.closeClient(1000, 'again');
    expect(s.phase).toBe('closed');
    expect(closes).toEqual([{ code: 4503, reason: 'gone' }]);
  });

  it('keeps the hibernatable choice of an accepting actor only while opening', () => {
    const { s } = socket();
    s.activate('r-1', 1, 0);
    s.acceptedAs(true);
    expect(s.hibernatable).toBe(false);
  });

  it('is overdue on an acknowledgement only while active, and on a wake only while hibernating', () => {
    const { s } = socket();
    s.activate('r-1', 1, 0);
    s.takeClientMessage(Buffer.from('one'), false);
    const later = Date.now() + 1000;
    expect(s.ackOverdue(later, 500)).toBe(true);
    expect(s.ackOverdue(later, 5000)).toBe(false);
    s.hibernate();
    expect(s.ackOverdue(later, 500)).toBe(false);
    expect(s.wakeOverdue(later)).toBe(false); // no wake asked for
    s.startWakeClock(Date.now(), 100);
    s.startWakeClock(Date.now() + 10_000, 100); // the first request sets the clock
    expect(s.wakeOverdue(later)).toBe(true);
    s.activate('r-1', 2, 1);
    expect(s.wakeOverdue(later)).toBe(false);
  });

  it('refuses a message past the pending limits', () => {
    const { s } = socket({ pendingFrames: 2, pendingBytes: 1000 });
    expect(s.takeClientMessage(Buffer.from('a'), false)).toBe(true);
    expect(s.takeClientMessage(Buffer.from('b'), false)).toBe(true);
    expect(s.takeClientMessage(Buffer.from('c'), false)).toBe(false);
  });

  it('tells the actor of a close only if a runner holds the socket', () => {
    const { s, sent } = socket();
    s.tellActorClosed(1000, 'bye');
    s.activate('r-1', 1, 0);
    s.tellActorClosed(1000, 'bye');
    expect(sent()).toEqual(['r-1/1:wsClose']);
  });

  it("delivers the actor's messages to the client, binary ones decoded", () => {
    const { s, toClient } = socket();
    s.deliver('r-1', 1, 1, 'hi', false);
    s.deliver('r-1', 1, 2, Buffer.from('raw').toString('base64'), true);
    expect(toClient).toEqual(['hi', Buffer.from('raw')]);
  });

  it('delivers each actor seq once and in order, and acknowledges the highest once per turn (H9)', async () => {
    const { s, sent, toClient } = socket();
    s.activate('r-1', 1, 0);
    expect(s.deliver('r-1', 1, 1, 'a', false)).toBe('delivered');
    expect(s.deliver('r-1', 1, 1, 'a', false)).toBe('duplicate');
    expect(s.deliver('r-1', 1, 3, 'c', false)).toBe('gap');
    expect(s.deliver('r-1', 1, 2, 'b', false)).toBe('delivered');
    expect(toClient).toEqual(['a', 'b']);
    await new Promise((resolve) => setImmediate(resolve));
    expect(sent()).toEqual(['r-1/1:wsOutAck']);
    // A new host learns on activation what was delivered, and the next open carries it.
    s.hibernate();
    s.activate('r-2', 2, 0);
    await new Promise((resolve) => setImmediate(resolve));
    expect(sent().at(-1)).toBe('r-2/2:wsOutAck');
  });

  it('takes frames from its stopping generation while hibernating, until that generation stopped', () => {
    const { s } = socket();
    s.activate('r-1', 4, 0);
    s.hibernate();
    expect(s.takesOutputFrom('r-1', 4)).toBe(true);
    expect(s.takesOutputFrom('r-1', 3)).toBe(false);
    s.noteActorState('stopping', 4);
    expect(s.takesOutputFrom('r-1', 4)).toBe(true);
    s.noteActorState('sleeping', 4);
    expect(s.takesOutputFrom('r-1', 4)).toBe(false);
  });
});
