/**
 * The gateway dies (SIGKILL) holding hibernating sockets, and a new one takes its place. Its
 * requests leave every snapshot once its heartbeat is older than T (H3), the reaper sweeps the
 * rows, and the actor's next start reports each lost connection once: no zombie survives (H4).
 * Also H2: a gateway that cannot heartbeat for longer than T closes its sockets with 1012.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listLiveHibernatingRequests } from '../src/db/hibernating-requests.js';
import { ClientCloseCode } from '../src/protocol/client-close-codes.js';
import { actorRequest, createActor, waitForActor, type Api } from './harness/actors.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';

const T = 3000;
let stack: TestStack;
let api: Api;

beforeAll(async () => {
  stack = await createTestStack({
    env: { DORMOUSE_HIBERNATION_THRESHOLD_MS: String(T), DORMOUSE_REAPER_INTERVAL_MS: '500' },
  });
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

type ProbeState = { disconnects: Record<string, number>; connections: string[]; generation: number };

const liveGateways = async () =>
  (await stack.db.query<{ gateway_id: string }>('SELECT gateway_id FROM gateways')).rows.map((r) => r.gateway_id);

describe('a gateway killed while holding hibernating sockets', () => {
  it('leaves no request in the list and no zombie connection after the next start', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'orphaned', input: { sleepAfterMs: 60_000 } });
    const clients = await Promise.all([0, 1, 2].map(() => TestClient.connect(stack.gatewayUrl, actor.actorId)));
    clients.forEach((c, i) => c.send(`hello ${i}`));
    await Promise.all(clients.map((c) => c.waitForMessages(1)));
    const connected = (await actorRequest<ProbeState>(stack.gatewayUrl, actor.actorId, '/state')).body.connections;
    expect(connected).toHaveLength(3);
    await api.sleep(actor.actorId);
    await waitForActor(api, actor.actorId, (a) => a.state === 'sleeping', 'asleep');
    const { gatewayId: deadGateway } = (await (await fetch(`${stack.gatewayUrl}/healthz`)).json()) as {
      gatewayId: string;
    };

    const gateway = stack.gateway!;
    gateway.kill('SIGKILL');
    await gateway.exited;
    for (const c of clients) expect((await c.waitForClose()).code).toBe(1006);
    await gateway.restart();

    // Past T the dead gateway's requests are no longer live, and the sweep deletes them.
    await waitFor(async () => (await listLiveHibernatingRequests(stack.db, actor.actorId, T)).length === 0, {
      timeoutMs: T * 3,
      message: 'dead requests out of the live list',
    });
    await waitFor(
      async () =>
        (await stack.db.query('SELECT 1 FROM hibernating_requests WHERE gateway_id = $1', [deadGateway])).rowCount ===
        0,
      { timeoutMs: T * 3, message: 'dead rows swept' },
    );
    await waitFor(async () => !(await liveGateways()).includes(deadGateway), {
      timeoutMs: T * 4,
      message: 'dead gateway forgotten',
    });

    const state = (await actorRequest<ProbeState>(stack.gatewayUrl, actor.actorId, '/state')).body;
    expect(state.generation).toBe(2);
    expect(state.connections).toEqual([]);
    expect(state.disconnects).toEqual(Object.fromEntries(connected.map((id) => [id, 1])));
  });
});

describe('a gateway that cannot heartbeat for longer than T', () => {
  it('closes its hibernatable sockets with 1012, and serves again once registered anew', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'unclaimed' });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('hi');
    await client.waitForMessages(1);

    // Its registration vanishes: every heartbeat now fails.
    const { gatewayId } = (await (await fetch(`${stack.gatewayUrl}/healthz`)).json()) as { gatewayId: string };
    await stack.db.query('DELETE FROM gateways WHERE gateway_id = $1', [gatewayId]);
    expect(await client.waitForClose(T * 3)).toMatchObject({ code: ClientCloseCode.ServiceRestart });

    await waitFor(async () => (await liveGateways()).includes(gatewayId), {
      timeoutMs: T * 2,
      message: 'registered again',
    });
    const again = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    again.send('back');
    await again.waitForMessages(1);
    again.close();
  });
});
