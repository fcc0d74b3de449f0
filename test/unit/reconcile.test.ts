import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseRecord, reconcile, type ConnectionRecord } from '../../src/runner/connections.js';

const record = (gatewayId: string, requestId = randomUUID()): ConnectionRecord => ({
  v: 1,
  requestId,
  gatewayId,
  lastIndex: 3,
  path: '/',
  headers: {},
  attachment: null,
});

describe('reconcile (H5)', () => {
  it('restores L∩M, closes L\\M toward the gateway, reports M\\L as lost', () => {
    const both = record('gw-1');
    const onlyRecorded = record('gw-1');
    const onlyLive = { gatewayId: 'gw-1', requestId: randomUUID() };
    const result = reconcile([{ gatewayId: 'gw-1', requestId: both.requestId }, onlyLive], [both, onlyRecorded]);
    expect(result).toEqual({ restore: [both], unknown: [onlyLive], lost: [onlyRecorded] });
  });

  it('runs on empty sides too', () => {
    const r = record('gw-1');
    expect(reconcile([], [])).toEqual({ restore: [], unknown: [], lost: [] });
    expect(reconcile([], [r])).toEqual({ restore: [], unknown: [], lost: [r] });
    const live = { gatewayId: 'gw-1', requestId: randomUUID() };
    expect(reconcile([live], [])).toEqual({ restore: [], unknown: [live], lost: [] });
  });

  it('matches on the request id; the gateway is the snapshot’s (a resumed session moved)', () => {
    const r = record('gw-old');
    const resumedElsewhere = { gatewayId: 'gw-new', requestId: r.requestId };
    expect(reconcile([resumedElsewhere], [r])).toEqual({
      restore: [{ ...r, gatewayId: 'gw-new' }],
      unknown: [],
      lost: [],
    });
  });
});

describe('connection records', () => {
  it('round-trip, and an unknown version is no record', () => {
    const r = record('gw-1');
    expect(parseRecord(Buffer.from(JSON.stringify(r)))).toEqual(r);
    expect(parseRecord(Buffer.from(JSON.stringify({ ...r, v: 2 })))).toBeNull();
    expect(parseRecord(Buffer.from('{not json'))).toBeNull();
  });
});
