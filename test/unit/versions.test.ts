import { describe, expect, it } from 'vitest';
import { SUPPORTED_PROTOCOL_VERSIONS } from '../../src/protocol/runner-protocol.js';
import { formatVersions, helloVersions, negotiateVersion, speaksVersion } from '../../src/protocol/versions.js';

describe('negotiateVersion', () => {
  it.each([
    ['the same single version', { min: 2, max: 2 }, { min: 2, max: 2 }, 2],
    ['the highest in common, runner newer', { min: 2, max: 4 }, { min: 1, max: 3 }, 3],
    ['the highest in common, gateway newer', { min: 1, max: 2 }, { min: 2, max: 5 }, 2],
    ['one range inside the other', { min: 1, max: 9 }, { min: 3, max: 4 }, 4],
    ['nothing when the runner is older', { min: 1, max: 1 }, { min: 2, max: 2 }, null],
    ['nothing when the runner is newer', { min: 3, max: 5 }, { min: 1, max: 2 }, null],
  ])('picks %s', (_what, offered, supported, expected) => {
    expect(negotiateVersion(offered, supported)).toBe(expected);
    // Symmetric: it does not matter which end asks.
    expect(negotiateVersion(supported, offered)).toBe(expected);
  });

  it('is what a runner and a gateway of this build agree on', () => {
    expect(negotiateVersion(SUPPORTED_PROTOCOL_VERSIONS, SUPPORTED_PROTOCOL_VERSIONS)).toBe(
      SUPPORTED_PROTOCOL_VERSIONS.max,
    );
    expect(speaksVersion(SUPPORTED_PROTOCOL_VERSIONS, SUPPORTED_PROTOCOL_VERSIONS.max)).toBe(true);
    expect(speaksVersion(SUPPORTED_PROTOCOL_VERSIONS, SUPPORTED_PROTOCOL_VERSIONS.max + 1)).toBe(false);
  });

  it('formats a range for close reasons', () => {
    expect(formatVersions({ min: 2, max: 2 })).toBe('2');
    expect(formatVersions({ min: 1, max: 3 })).toBe('1 to 3');
  });
});

describe('helloVersions', () => {
  it('reads the range of a hello of any version, whatever else it holds', () => {
    expect(
      helloVersions(JSON.stringify({ type: 'hello', protocolVersions: { min: 7, max: 9 }, future: { field: true } })),
    ).toEqual({ min: 7, max: 9 });
  });

  it('reads the single version of a version 1 hello', () => {
    expect(helloVersions(JSON.stringify({ type: 'hello', protocolVersion: 1, runnerId: 'r' }))).toEqual({
      min: 1,
      max: 1,
    });
  });

  it.each([
    ['not JSON', '{'],
    ['another frame', JSON.stringify({ type: 'ping', ts: 1 })],
    ['a hello without versions', JSON.stringify({ type: 'hello' })],
    ['an upside-down range', JSON.stringify({ type: 'hello', protocolVersions: { min: 3, max: 2 } })],
    ['a range of non-integers', JSON.stringify({ type: 'hello', protocolVersions: { min: 1.5, max: 2 } })],
  ])('finds none in %s', (_what, raw) => {
    expect(helloVersions(raw)).toBeNull();
  });
});
