/**
 * `/metrics` on the gateway (Prometheus text format): actors by state, starts and wakes with
 * their latencies, sockets and hibernating sockets, pending bytes, the command queue, runners.
 * And the workers' own Temporal metrics from the SDK's exporter.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../dev/free-port.js';
import { actorRequest, createActor, waitForActor, type Api } from './harness/actors.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';

let stack: TestStack;
let api: Api;
let workerMetricsUrl: string;

beforeAll(async () => {
  const port = await freePort();
  workerMetricsUrl = `http://127.0.0.1:${port}/metrics`;
  stack = await createTestStack({ workers: 0 });
  await stack.startWorker({ env: { DORMOUSE_WORKER_METRICS_ADDRESS: `127.0.0.1:${port}` } });
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

/** One sample's value from Prometheus text, e.g. `dormouse_actors{state="running"}`. */
async function sample(series: string, url = `${stack.gatewayUrl}/metrics`): Promise<number | undefined> {
  const text = await (await fetch(url)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('gateway metrics', () => {
  it('count actors, starts, wakes and sockets as they happen', async () => {
    const room = await createActor(api, { name: 'chat', key: 'metered', input: { sleepAfterMs: 600_000 } });
    const client = await TestClient.connect(stack.gatewayUrl, room.actorId);
    client.send('one');
    await client.waitForMessages(1);
    // The reply can come before the registry records running (the gateway believes its runner's
    // report, src/gateway/actor-watch.ts); the counts follow the registry.
    await waitForActor(api, room.actorId, (a) => a.state === 'running', 'recorded running');
    expect(await sample('dormouse_actors{state="running"}')).toBe(1);
    // Counted on the registry's NOTIFY, which may reach the gateway just after the row is read.
    await waitFor(async () => (await sample('dormouse_actor_starts_total')) === 1, {
      timeoutMs: 5_000,
      message: 'one start counted',
    });
    expect(await sample('dormouse_client_sockets')).toBe(1);
    expect(await sample('dormouse_runners_connected')).toBe(1);
    expect(await sample('dormouse_command_queue_depth')).toBe(0);

    await api.sleep(room.actorId);
    await waitForActor(api, room.actorId, (a) => a.state === 'sleeping', 'asleep');
    await waitFor(async () => (await sample('dormouse_hibernating_sockets')) === 1, {
      timeoutMs: 5_000,
      message: 'one hibernating socket',
    });
    // Actor counts are cached for a few seconds (ACTOR_COUNTS_TTL_MS): the scrapes above may hold them.
    await waitFor(async () => (await sample('dormouse_actors{state="sleeping"}')) === 1, {
      timeoutMs: 10_000,
      message: 'one sleeping actor',
    });

    client.send('two'); // wakes it
    await client.waitForMessages(2);
    await waitFor(async () => (await sample('dormouse_actor_wake_seconds_count{trigger="websocket"}')) === 1, {
      timeoutMs: 5_000,
      message: 'a timed websocket wake',
    });
    expect(await sample('dormouse_actor_wakes_total{trigger="websocket"}')).toBe(1);
    expect(await sample('dormouse_actor_starts_total')).toBe(2);
    expect(await sample('dormouse_hibernating_sockets')).toBe(0);

    await api.sleep(room.actorId);
    await waitForActor(api, room.actorId, (a) => a.state === 'sleeping', 'asleep again');
    expect((await actorRequest(stack.gatewayUrl, room.actorId, '/state')).status).toBe(200); // an HTTP wake
    expect(await sample('dormouse_actor_wakes_total{trigger="http"}')).toBe(1);
    await waitFor(async () => (await sample('dormouse_actor_wake_seconds_count{trigger="http"}')) === 1, {
      timeoutMs: 5_000,
      message: 'a timed http wake',
    });
    expect(await sample('dormouse_actor_starts_total')).toBe(3);
    client.close();
  });
});

describe('worker metrics', () => {
  it("are the Temporal SDK's, served on the configured address", async () => {
    const text = await waitFor(
      async () => {
        const body = await (await fetch(workerMetricsUrl)).text();
        return body.includes('temporal_') ? body : undefined;
      },
      { timeoutMs: 20_000, message: 'the worker exporter serving Temporal metrics' },
    );
    expect(text).toMatch(/^temporal_\w+/m);
  });
});
