import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { closeReason } from '../../src/protocol/close-reason.js';
import { parseGatewayFrame, parseRunnerFrame } from '../../src/protocol/runner-protocol.js';

const actorId = randomUUID();

describe('runner protocol', () => {
  it('accepts a well-formed hello', () => {
    const frame = { type: 'hello', protocolVersion: 1, runnerId: randomUUID(), name: 'r', pool: 'default', capacity: 10, actorNames: ['chat'], actors: [] };
    expect(parseRunnerFrame(JSON.stringify(frame)).ok).toBe(true);
  });

  it.each([
    ['not JSON', '{', 'not valid JSON'],
    ['an unknown type', JSON.stringify({ type: 'launch' }), 'type'],
    ['an unknown field', JSON.stringify({ type: 'ping', ts: 1, extra: true }), 'extra'],
    ['a wrong type', JSON.stringify({ type: 'ping', ts: 'now' }), 'ts'],
    ['a negative event index', JSON.stringify({ type: 'events', events: [{ actorId, generation: 1, index: -1, event: { kind: 'running' } }] }), 'index'],
    ['a bad actor name', JSON.stringify({ type: 'hello', protocolVersion: 1, runnerId: randomUUID(), name: 'r', pool: 'p', capacity: 1, actorNames: ['no spaces'], actors: [] }), 'actorNames'],
    ['a non-base64 body', JSON.stringify({ type: 'httpResponse', requestId: randomUUID(), status: 200, headers: {}, body: '***' }), 'body'],
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
    expect(parseGatewayFrame(JSON.stringify({ type: 'commands', commands: [{ actorId, generation: 3, idx: 0, command: start }] })).ok).toBe(true);
    const noSnapshot = { ...start, hibernatingRequests: undefined };
    expect(parseGatewayFrame(JSON.stringify({ type: 'commands', commands: [{ actorId, generation: 3, idx: 0, command: noSnapshot }] })).ok).toBe(false);
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
