/** The runner SDK's gateway URLs (validation) and the order and delays in which it tries them. */
import { describe, expect, it } from 'vitest';
import { GatewayRotation, runnerConnectUrls } from '../../src/runner/gateway-link.js';
import { createRunner } from '../../src/runner/index.js';
import { Backoff } from '../../src/util/backoff.js';
import { chat } from '../../examples/chat.js';

describe('runnerConnectUrls', () => {
  it('turns one base URL into its runner endpoint', () => {
    expect(runnerConnectUrls('http://127.0.0.1:6420')).toEqual(['ws://127.0.0.1:6420/runners/connect']);
    expect(runnerConnectUrls('https://gw.example.com/')).toEqual(['wss://gw.example.com/runners/connect']);
  });

  it('keeps the order of several, without duplicates', () => {
    expect(runnerConnectUrls(['http://b:6421', 'http://a:6420', 'http://b:6421/'])).toEqual([
      'ws://b:6421/runners/connect',
      'ws://a:6420/runners/connect',
    ]);
  });

  it('refuses no URL, a non-URL and a non-http(s) URL, naming the culprit', () => {
    expect(() => runnerConnectUrls([])).toThrow(/at least one gateway URL/);
    expect(() => runnerConnectUrls(['http://a:6420', 'gateway-b'])).toThrow(/"gateway-b" is not an http\(s\) URL/);
    expect(() => runnerConnectUrls('ws://a:6420')).toThrow(/"ws:\/\/a:6420" is not an http\(s\) URL/);
    expect(() => runnerConnectUrls('')).toThrow(/"" is not an http\(s\) URL/);
    expect(() => runnerConnectUrls([42 as unknown as string])).toThrow(/42 is not an http\(s\) URL/);
  });

  it('makes createRunner throw at once on a bad URL', () => {
    expect(() => createRunner({ gatewayUrl: [], actors: [chat] })).toThrow(/at least one gateway URL/);
    expect(() => createRunner({ gatewayUrl: ['http://a:6420', 'nats://b:4222'], actors: [chat] })).toThrow(
      /"nats:\/\/b:4222" is not an http\(s\) URL/,
    );
  });
});

/** A backoff without jitter: 100, 200, 400, … up to 800. */
const plainBackoff = () => new Backoff({ initialMs: 100, maxMs: 800, jitter: 0.5 }, () => 0);

describe('GatewayRotation', () => {
  it('starts with the first URL and moves on at once while a round has untried URLs', () => {
    const rotation = new GatewayRotation(['a', 'b', 'c'], plainBackoff());
    expect(rotation.current).toBe('a');
    expect(rotation.failed()).toBe(0);
    expect(rotation.current).toBe('b');
    expect(rotation.failed()).toBe(0);
    expect(rotation.current).toBe('c');
  });

  it('waits with growing backoff once every URL failed in turn, then starts a new round', () => {
    const rotation = new GatewayRotation(['a', 'b'], plainBackoff());
    const tries: [string, number][] = [];
    for (let i = 0; i < 8; i++) tries.push([rotation.current, rotation.failed()]);
    expect(tries).toEqual([
      ['a', 0],
      ['b', 100],
      ['a', 0],
      ['b', 200],
      ['a', 0],
      ['b', 400],
      ['a', 0],
      ['b', 800],
    ]);
  });

  it('fails over from a gateway whose connection held to the next one at once, starting the delays over', () => {
    const rotation = new GatewayRotation(['a', 'b', 'c'], plainBackoff(), 10_000);
    rotation.failed(0);
    rotation.failed(0);
    expect(rotation.failed(0)).toBe(100); // a whole round failed
    expect(rotation.failed(0)).toBe(0); // a
    expect(rotation.failed(0)).toBe(0); // b
    expect(rotation.failed(0)).toBe(200); // c: a second round failed
    expect(rotation.failed(0)).toBe(0); // a
    expect(rotation.current).toBe('b');
    rotation.welcomed(1_000);
    // b goes away after holding: c, then a, at once; a whole round without a welcome waits, from the start.
    expect(rotation.failed(11_000)).toBe(0);
    expect(rotation.current).toBe('c');
    expect(rotation.failed(11_000)).toBe(0);
    expect(rotation.current).toBe('a');
    expect(rotation.failed(11_000)).toBe(100);
    expect(rotation.current).toBe('b');
  });

  it('counts a connection dropped soon after its welcome as a failure: no tight loop between gateways', () => {
    const rotation = new GatewayRotation(['a', 'b'], plainBackoff(), 10_000);
    const delays: number[] = [];
    for (let now = 0; now < 6; now++) {
      rotation.welcomed(now * 1_000);
      delays.push(rotation.failed(now * 1_000 + 500));
    }
    expect(delays).toEqual([0, 100, 0, 200, 0, 400]);
    // Then one holds: its loss moves on at once, and the next round's delay starts over.
    rotation.welcomed(100_000);
    expect([rotation.failed(120_000), rotation.failed(120_000)]).toEqual([0, 100]);
  });

  it('with one URL, backs off on every failure as a single gateway always did', () => {
    const rotation = new GatewayRotation(['a'], plainBackoff(), 10_000);
    expect([rotation.failed(0), rotation.failed(0), rotation.failed(0)]).toEqual([100, 200, 400]);
    rotation.welcomed(0);
    expect(rotation.failed(10_000)).toBe(100);
    expect(rotation.current).toBe('a');
  });

  it('refuses an empty list', () => {
    expect(() => new GatewayRotation([])).toThrow(/at least one URL/);
  });
});
