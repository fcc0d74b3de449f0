/**
 * A runner's connection epoch (issue 8 §2): a runner is never left connected but unallocatable.
 * - Reconnecting to the same gateway, the old socket's late close must not clear the live
 *   connection's gateway, and the live connection's pings keep the row alive.
 * - Declared lost while its socket stayed open, the runner's pings match nothing: the gateway
 *   closes that socket (4005), the runner says hello again, and actors are placed on it again.
 * Real gateway, worker and runner processes; the first case speaks the runner protocol on raw sockets.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { RunnerCloseCode, type GatewayToRunner } from '../src/protocol/runner-protocol.js';
import { wsText } from '../src/util/ws-data.js';
import { rawHello, runnerConnectUrl } from './harness/raw-runner.js';
import { createActor, waitForActor, type Api } from './harness/actors.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';

const PING_MS = 200;

let stack: TestStack;
let api: Api;

beforeAll(async () => {
  stack = await createTestStack({
    runners: [],
    env: {
      DORMOUSE_RUNNER_PING_MS: String(PING_MS),
      DORMOUSE_RUNNER_LOST_MS: '5000',
      DORMOUSE_REAPER_INTERVAL_MS: '500',
    },
  });
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

interface RunnerRow {
  gateway_id: string | null;
  lost_at: Date | null;
  last_ping_at: Date;
  connection_epoch: string;
}

async function runnerRow(runnerId: string): Promise<RunnerRow | undefined> {
  const { rows } = await stack.db.query<RunnerRow>(
    'SELECT gateway_id, lost_at, last_ping_at, connection_epoch FROM runners WHERE runner_id = $1',
    [runnerId],
  );
  return rows[0];
}

/** What the reaper does to a runner it declares lost (db/runners.ts markLostRunners). */
async function declareLost(runnerId: string): Promise<void> {
  await stack.db.query('UPDATE runners SET lost_at = now(), gateway_id = NULL, allocated = 0 WHERE runner_id = $1', [
    runnerId,
  ]);
}

/** A raw runner socket: says hello, resolves once welcomed; records how the gateway closed it. */
class RawRunner {
  readonly ws: WebSocket;
  closed: { code: number; reason: string } | null = null;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('close', (code, reason) => (this.closed = { code, reason: reason.toString() }));
  }

  static connect(runnerId: string): Promise<RawRunner> {
    const ws = new WebSocket(runnerConnectUrl(stack.gatewayUrl));
    const runner = new RawRunner(ws);
    return new Promise((resolve, reject) => {
      ws.on('error', reject);
      ws.on('open', () => ws.send(JSON.stringify(rawHello({ runnerId }))));
      ws.on('message', (data) => {
        if ((JSON.parse(wsText(data)) as GatewayToRunner).type === 'welcome') resolve(runner);
      });
      ws.on('close', (code) => reject(new Error(`closed with ${code} before the welcome`)));
    });
  }

  ping(): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: 'ping', ts: Date.now() }));
  }
}

describe('a runner connection epoch', () => {
  it('a reconnect to the same gateway survives the old socket closing late', async () => {
    const runnerId = randomUUID();
    const first = await RawRunner.connect(runnerId);
    const firstEpoch = Number((await runnerRow(runnerId))!.connection_epoch);
    const second = await RawRunner.connect(runnerId);
    // The gateway replaces the first connection; its close arrives after the second connected.
    await waitFor(() => first.closed, { timeoutMs: 5_000, message: 'the first connection closed' });
    expect(first.closed?.code).toBe(RunnerCloseCode.Replaced);

    const pingedAfter = new Date();
    const row = await waitFor(
      async () => {
        second.ping();
        const r = await runnerRow(runnerId);
        return r && r.last_ping_at > pingedAfter ? r : undefined;
      },
      { timeoutMs: 5_000, intervalMs: PING_MS, message: 'the second connection keeps the row alive' },
    );
    expect(row).toMatchObject({ lost_at: null, connection_epoch: String(firstEpoch + 1) });
    expect(row.gateway_id).not.toBeNull();
    expect(second.closed).toBeNull();
    second.ws.close();
  });

  it('a connection declared lost while open is closed with 4005 when it pings', async () => {
    const runnerId = randomUUID();
    const raw = await RawRunner.connect(runnerId);
    await declareLost(runnerId);
    const closed = await waitFor(
      () => {
        raw.ping();
        return raw.closed;
      },
      { timeoutMs: 5_000, intervalMs: PING_MS, message: 'the gateway closed the lost connection' },
    );
    expect(closed.code).toBe(RunnerCloseCode.NotRegistered);
  });

  it('a runner declared lost while its socket stayed open says hello again and hosts actors again', async () => {
    await stack.startRunner();
    const { rows } = await stack.db.query<{ runner_id: string }>(
      'SELECT runner_id FROM runners WHERE pool = $1 AND actor_names @> $2',
      ['default', ['chat']],
    );
    const runnerId = rows[0]!.runner_id;
    const before = await runnerRow(runnerId);
    await declareLost(runnerId);

    await waitFor(
      async () => {
        const r = await runnerRow(runnerId);
        return (
          r &&
          r.lost_at === null &&
          r.gateway_id !== null &&
          Number(r.connection_epoch) > Number(before!.connection_epoch)
        );
      },
      { timeoutMs: 15_000, message: 'the runner said hello again' },
    );
    const actor = await createActor(api, { name: 'chat', key: `after-lost-${randomUUID()}` });
    const running = await waitForActor(api, actor.actorId, (a) => a.state === 'running', 'running');
    expect(running.runnerId).toBe(runnerId);
  });
});
