import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, requireGatewayTokens } from '../../src/config.js';

describe('config', () => {
  it('has the defaults of DESIGN §7', () => {
    const c = loadConfig({});
    expect(c.temporal).toEqual({
      address: 'localhost:7233',
      addressGiven: false,
      namespace: 'default',
      taskQueue: 'dormouse',
    });
    expect(c.gateway.port).toBe(6420);
    expect(c.timing).toMatchObject({
      hibernationThresholdMs: 90_000,
      gatewayHeartbeatMs: 45_000,
      startThresholdMs: 30_000,
      stopThresholdMs: 300_000,
      runnerPingMs: 3_000,
      runnerLostMs: 15_000,
      wakeTimeoutMs: 90_000,
      ackTimeoutMs: 30_000,
      backoffBaseMs: 2_000,
      backoffMaxExponent: 8,
      backoffResetMs: 600_000,
      restAfterMs: 10_000,
      sleepAfterMs: 300_000,
    });
    expect(c.gateway.pendingFrames).toBe(65_535);
    expect(c.gateway.pendingBytes).toBe(128 * 1024 * 1024);
  });

  it('takes overrides from the environment', () => {
    const c = loadConfig({
      DORMOUSE_START_THRESHOLD_MS: '1500',
      TEMPORAL_ADDRESS: 'temporal:7233',
      DORMOUSE_GATEWAY_PORT: '0',
    });
    expect(c.timing.startThresholdMs).toBe(1500);
    expect(c.temporal).toMatchObject({ address: 'temporal:7233', addressGiven: true });
    expect(c.gateway.port).toBe(0);
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ DORMOUSE_ADMIN_TOKEN: '', DORMOUSE_GATEWAY_PORT: '' }).gateway.port).toBe(6420);
  });

  it('reads runner tokens per pool, and refuses a malformed list', () => {
    expect([...loadConfig({ DORMOUSE_RUNNER_TOKENS: 'a=1,b=2' }).auth.runnerTokens]).toEqual([
      ['a', '1'],
      ['b', '2'],
    ]);
    expect(() => loadConfig({ DORMOUSE_RUNNER_TOKENS: 'a=1,b' })).toThrow(/DORMOUSE_RUNNER_TOKENS/);
  });

  it('reads the actor names each pool may host, and refuses a malformed list', () => {
    expect(loadConfig({}).auth.poolActors).toBeUndefined();
    const pools = loadConfig({ DORMOUSE_POOL_ACTORS: 'a=chat|probe,b=chat' }).auth.poolActors!;
    expect([...pools].map(([pool, names]) => [pool, [...names]])).toEqual([
      ['a', ['chat', 'probe']],
      ['b', ['chat']],
    ]);
    for (const bad of ['a', 'a=', 'a=chat=probe', 'a=chat|', 'a=no spaces'])
      expect(() => loadConfig({ DORMOUSE_POOL_ACTORS: bad })).toThrow(/DORMOUSE_POOL_ACTORS/);
  });

  it('requires tokens outside development mode', () => {
    expect(() => requireGatewayTokens(loadConfig({}))).toThrow(/DORMOUSE_ADMIN_TOKEN and DORMOUSE_RUNNER_TOKENS/);
    expect(() => requireGatewayTokens(loadConfig({ DORMOUSE_MODE: 'development' }))).not.toThrow();
    expect(() =>
      requireGatewayTokens(loadConfig({ DORMOUSE_ADMIN_TOKEN: 'x'.repeat(16), DORMOUSE_RUNNER_TOKENS: 'default=t' })),
    ).not.toThrow();
  });

  it('refuses nonsense with a message naming the variable', () => {
    expect(() => loadConfig({ DORMOUSE_RUNNER_LOST_MS: '-5' })).toThrow(ConfigError);
    expect(() => loadConfig({ DORMOUSE_RUNNER_LOST_MS: 'soon' })).toThrow(/DORMOUSE_RUNNER_LOST_MS/);
  });
});
