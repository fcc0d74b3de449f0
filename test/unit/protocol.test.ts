import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { closeReason } from '../../src/protocol/close-reason.js';
import { parseGatewayFrame, parseRunnerFrame } from '../../src/protocol/runner-protocol.js';

const actorId = randomUUID();
/** A tunnel frame: the same envelope whatever its message says. */
const tunnel = (message: Record<string, unknown>) => ({
  type: 'tunnel',
  requestId: randomUUID(),
  actorId,
  generation: 3,
  message,
});

describe('runner protocol', () => {
  it('accepts a well-formed hello', () => {
    const frame = {
      type: 'hello',
      protocolVersions: { min: 2, max: 2 },
      runnerId: randomUUID(),
      name: 'r',
      pool: 'default',
      capacity: 10,
      actorNames: ['chat'],
      actors: [],
    };
    expect(parseRunnerFrame(JSON.stringify(frame)).ok).toBe(true);
  });

  it.each([
    ['not JSON', '{', 'not valid JSON'],
    ['an unknown type', JSON.stringify({ type: 'launch' }), 'type'],
    ['an unknown field', JSON.stringify({ type: 'ping', ts: 1, extra: true }), 'extra'],
    ['a wrong type', JSON.stringify({ type: 'ping', ts: 'now' }), 'ts'],
    [
      'a negative event index',
      JSON.stringify({ type: 'events', events: [{ actorId, generation: 1, index: -1, event: { kind: 'running' } }] }),
      'index',
    ],
    [
      'a bad actor name',
      JSON.stringify({
        type: 'hello',
        protocolVersions: { min: 2, max: 2 },
        runnerId: randomUUID(),
        name: 'r',
        pool: 'p',
        capacity: 1,
        actorNames: ['no spaces'],
        actors: [],
      }),
      'actorNames',
    ],
    [
      'a non-base64 body',
      JSON.stringify(tunnel({ kind: 'httpResponse', status: 200, headers: {}, body: '***' })),
      'message.body',
    ],
    [
      'a tunnel frame without its actor',
      JSON.stringify({ ...tunnel({ kind: 'wsAck', index: 1 }), actorId: undefined }),
      'actorId',
    ],
    ['a tunnel frame of an unknown kind', JSON.stringify(tunnel({ kind: 'wsPing' })), 'message.kind'],
    [
      'a gateway kind from a runner',
      JSON.stringify(tunnel({ kind: 'wsOpen', gatewayId: 'gw', path: '/', headers: {}, lastIndex: 0, offer: false })),
      'message.kind',
    ],
  ])('rejects %s and says where', (_what, raw, mention) => {
    const result = parseRunnerFrame(raw);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toContain(mention);
  });

  it('validates commands with their snapshot', () => {
    const start = {
      kind: 'startActor',
      actorId,
      name: 'chat',
      key: null,
      input: { a: 1 },
      generation: 3,
      reason: 'wake',
      hibernatingRequests: [{ gatewayId: 'gw-1', requestId: randomUUID() }],
    };
    expect(
      parseGatewayFrame(
        JSON.stringify({ type: 'commands', commands: [{ actorId, generation: 3, idx: 0, command: start }] }),
      ).ok,
    ).toBe(true);
    const noSnapshot = { ...start, hibernatingRequests: undefined };
    expect(
      parseGatewayFrame(
        JSON.stringify({ type: 'commands', commands: [{ actorId, generation: 3, idx: 0, command: noSnapshot }] }),
      ).ok,
    ).toBe(false);
  });
});

describe('tunnel frames', () => {
  const fromGateway = [
    { kind: 'httpRequest', method: 'POST', path: '/messages?x=1', headers: { a: 'b' }, body: 'aGk=' },
    { kind: 'wsOpen', gatewayId: 'gw-1', path: '/', headers: {}, lastIndex: 0, lastOutSeq: 3, offer: true },
    { kind: 'wsMessage', index: 1, data: 'hi', binary: false },
    { kind: 'wsClose', code: 1000, reason: 'bye' },
    { kind: 'wsOutAck', seq: 3 },
  ];
  const fromRunner = [
    { kind: 'httpResponse', status: 200, headers: {}, body: null },
    { kind: 'notHosted', message: 'not here' },
    { kind: 'wsOpenAck', hibernatable: true },
    { kind: 'wsAck', index: 4 },
    { kind: 'wsMessage', seq: 1, data: 'aGk=', binary: true },
    { kind: 'wsClose', code: 4000, reason: 'as asked' },
  ];

  it('carry every kind in one envelope with the request, the actor and the generation', () => {
    for (const message of fromGateway) {
      const frame = tunnel(message);
      const parsed = parseGatewayFrame(JSON.stringify(frame));
      expect(parsed.ok ? parsed.message : parsed.error).toEqual(frame);
    }
    for (const message of fromRunner) {
      const frame = tunnel(message);
      const parsed = parseRunnerFrame(JSON.stringify(frame));
      expect(parsed.ok ? parsed.message : parsed.error).toEqual(frame);
    }
  });

  it('of every kind are refused without any part of the envelope', () => {
    for (const field of ['requestId', 'actorId', 'generation']) {
      for (const message of fromGateway)
        expect(parseGatewayFrame(JSON.stringify({ ...tunnel(message), [field]: undefined })).ok).toBe(false);
      for (const message of fromRunner)
        expect(parseRunnerFrame(JSON.stringify({ ...tunnel(message), [field]: undefined })).ok).toBe(false);
    }
  });
});

describe('closeReason', () => {
  it('keeps short reasons and cuts long ones to 123 bytes on a character boundary', () => {
    expect(closeReason('bye')).toBe('bye');
    const long = 'é'.repeat(100); // 200 bytes
    const cut = closeReason(long);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(123);
    expect(cut.endsWith('...')).toBe(true);
    expect(cut).not.toContain('\uFFFD');
  });
});
