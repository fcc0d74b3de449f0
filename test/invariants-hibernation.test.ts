/**
 * DESIGN §5 invariants on real sockets and processes that the other hibernation tests do not
 * reach: a live gateway keeps its rows live past T (H2, H3); every way a socket ends deletes its
 * row (H4: graceful gateway shutdown, the acknowledgement timeout, the message-size limit, the
 * wake timeout); the limits' close codes; a gateway restarted under the same id.
 *
 * The reaper ticks rarely here, so a row that goes is deleted by the path under test, not swept.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientCloseCode } from '../src/protocol/client-close-codes.js';
import { listLiveHibernatingRequests } from '../src/db/hibernating-requests.js';
import { actorRequest, createActor, waitForActor, type Api } from './harness/actors.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';

/** The hibernation threshold T. */
const T = 2000;
const ACK_TIMEOUT_MS = 2000;
const WAKE_TIMEOUT_MS = 4000;
const MAX_MESSAGE_BYTES = 4096;
/** The stack's gateway keeps its id across restarts. */
const GATEWAY_ID = 'gw-invariants';
const DROP_LINK = 'drop the link';

let stack: TestStack;
let api: Api;

beforeAll(async () => {
  stack = await createTestStack({
    env: {
      DORMOUSE_HIBERNATION_THRESHOLD_MS: String(T),
      DORMOUSE_ACK_TIMEOUT_MS: String(ACK_TIMEOUT_MS),
      DORMOUSE_WAKE_TIMEOUT_MS: String(WAKE_TIMEOUT_MS),
      DORMOUSE_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES),
      DORMOUSE_RUNNER_PING_MS: '300',
      // A runner frozen for the acknowledgement timeout is not declared lost meanwhile.
      DORMOUSE_RUNNER_LOST_MS: '20000',
      DORMOUSE_REAPER_INTERVAL_MS: '600000',
      DORMOUSE_GATEWAY_ID: GATEWAY_ID,
    },
    // The runner drops its gateway socket once, just before sending the frames of that message.
    runners: [{ env: { PROBE_DROP_BEFORE_SEND: DROP_LINK } }],
  });
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

type ProbeState = { connections: string[]; disconnects: Record<string, number>; generation: number };

const probeState = async (actorId: string): Promise<ProbeState> =>
  (await actorRequest<ProbeState>(stack.gatewayUrl, actorId, '/state')).body;

const rowsOf = async (column: 'actor_id' | 'gateway_id', value: string): Promise<string[]> =>
  (
    await stack.db.query<{ request_id: string }>(`SELECT request_id FROM hibernating_requests WHERE ${column} = $1`, [
      value,
    ])
  ).rows.map((r) => r.request_id);

const rowGone = (actorId: string) =>
  waitFor(async () => (await rowsOf('actor_id', actorId)).length === 0, {
    timeoutMs: 5_000,
    message: `the row of ${actorId} deleted`,
  });

const gatewayIdOf = async (gatewayUrl: string): Promise<string> =>
  ((await (await fetch(`${gatewayUrl}/healthz`)).json()) as { gatewayId: string }).gatewayId;

/** A hibernatable client that has talked to the actor once. */
async function connectedClient(actorId: string): Promise<TestClient> {
  const client = await TestClient.connect(stack.gatewayUrl, actorId);
  client.send('hello');
  await client.waitForMessages(1);
  return client;
}

async function sleepNow(actorId: string): Promise<void> {
  expect((await api.sleep(actorId)).status).toBe(202);
  await waitForActor(api, actorId, (a) => a.state === 'sleeping', 'asleep');
}

describe('a live gateway holding a hibernating socket (H2)', () => {
  it('keeps its row live past T: the heartbeat, not the open, counts', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'kept-live' });
    const client = await connectedClient(actor.actorId);
    await sleepNow(actor.actorId);
    const [row] = await rowsOf('actor_id', actor.actorId);
    expect(row).toBeDefined();

    // Wait (bounded) until the row is older than 2T by the database's clock.
    await waitFor(
      async () =>
        (
          await stack.db.query<{ old: boolean }>(
            `SELECT now() - opened_at > make_interval(secs => $2::double precision / 1000) AS old
             FROM hibernating_requests WHERE request_id = $1`,
            [row, 2 * T],
          )
        ).rows[0]?.old === true,
      { timeoutMs: 4 * T, intervalMs: 200, message: 'the row older than 2T' },
    );
    expect(await listLiveHibernatingRequests(stack.db, actor.actorId, T)).toEqual([
      { gatewayId: GATEWAY_ID, requestId: row },
    ]);
    expect(client.isClosed).toBeNull();

    // The next start restores it: the message wakes the actor and arrives on the same socket.
    client.send('after 2T');
    const [, echo] = await client.waitForMessages(2);
    expect(JSON.parse(echo!)).toMatchObject({ echo: 'after 2T' });
    expect((await probeState(actor.actorId)).disconnects).toEqual({});
    client.close();
  });
});

describe('a runner reconnecting within one generation (H6)', () => {
  it('gets the unacknowledged client messages again, and processes each once', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'link-dropped', input: { sleepAfterMs: 600_000 } });
    const client = await connectedClient(actor.actorId);
    // The link drops after this message is durable, before its acknowledgement leaves: the
    // gateway resends it, and whatever followed it, after the reconnect; the actor drops the copy.
    client.send(DROP_LINK);
    client.send('next');
    await client.waitForMessages(3, 30_000);
    client.send('last');
    await client.waitForMessages(4, 30_000);

    const log = await readFile(stack.runners[0]!.logFile, 'utf8');
    expect(log.match(/connected to gateway/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
    expect(client.json<{ echo: string }>().map((m) => m.echo)).toEqual(['hello', DROP_LINK, 'next', 'last']);
    const state = (
      await actorRequest<{ received: { text: string }[]; generation: number }>(
        stack.gatewayUrl,
        actor.actorId,
        '/state',
      )
    ).body;
    expect(state.generation).toBe(1);
    expect(state.received.map((r) => r.text)).toEqual(['hello', DROP_LINK, 'next', 'last']);
    expect(client.isClosed).toBeNull();
    client.close();
  });
});

describe('the row of a socket goes (H4)', () => {
  it('on the acknowledgement timeout, with 4504: the actor never acknowledged a message', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'unacknowledged' });
    const client = await connectedClient(actor.actorId);
    expect(await rowsOf('actor_id', actor.actorId)).toHaveLength(1);
    const runner = stack.runners[0]!;
    runner.kill('SIGSTOP');
    try {
      client.send('never acknowledged');
      expect(await client.waitForClose(ACK_TIMEOUT_MS * 4)).toMatchObject({ code: ClientCloseCode.AckTimeout });
      await rowGone(actor.actorId);
    } finally {
      runner.kill('SIGCONT');
    }
  });

  it('on a message over the size limit, with 1009; the actor hears the close once', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'too-big' });
    const client = await TestClient.connect(stack.gatewayUrl, actor.actorId);
    client.send('x'.repeat(MAX_MESSAGE_BYTES));
    const [echo] = await client.waitForMessages(1);
    expect(JSON.parse(echo!)).toMatchObject({ n: 1 });
    const [conn] = (await probeState(actor.actorId)).connections;

    client.send('x'.repeat(MAX_MESSAGE_BYTES + 1));
    expect(await client.waitForClose()).toMatchObject({ code: 1009 });
    await rowGone(actor.actorId);
    const state = await waitFor(
      async () => {
        const s = await probeState(actor.actorId);
        return s.disconnects[conn!] ? s : undefined;
      },
      { timeoutMs: 5_000, message: 'the actor told of the close' },
    );
    expect(state.disconnects).toEqual({ [conn!]: 1 });
    expect(state.connections).toEqual([]);
  });

  it('on the wake timeout, with 4503', async () => {
    const actor = await createActor(api, { name: 'probe', key: 'no-wake', input: { hangAfterStarts: 1 } });
    const client = await connectedClient(actor.actorId);
    await sleepNow(actor.actorId);
    expect(await rowsOf('actor_id', actor.actorId)).toHaveLength(1);
    client.send('wake up');
    expect(await client.waitForClose(WAKE_TIMEOUT_MS * 3)).toMatchObject({ code: ClientCloseCode.ActorUnavailable });
    await rowGone(actor.actorId);
  });
});

describe('the gateway', () => {
  it('on a graceful gateway shutdown: clients told 1001, the rows of that gateway deleted', async () => {
    const gateway = stack.gateway!;
    const actor = await createActor(api, { name: 'probe', key: 'graceful-shutdown', input: { sleepAfterMs: 600_000 } });
    const hibernating = await connectedClient(actor.actorId);
    await sleepNow(actor.actorId);
    const active = await connectedClient(actor.actorId);
    expect(await rowsOf('actor_id', actor.actorId)).toHaveLength(2);

    expect((await gateway.stop()).code).toBe(0);
    expect(await hibernating.waitForClose()).toMatchObject({ code: ClientCloseCode.GoingAway });
    expect(await active.waitForClose()).toMatchObject({ code: ClientCloseCode.GoingAway });
    expect(await rowsOf('gateway_id', GATEWAY_ID)).toEqual([]);
    expect(await rowsOf('actor_id', actor.actorId)).toEqual([]);
    await gateway.restart();
  });

  it('restarted under the same id clears its old rows at once, and its clients reconnect to the actor', async () => {
    const gateway = stack.gateway!;
    const actor = await createActor(api, { name: 'probe', key: 'same-gateway-id', input: { sleepAfterMs: 600_000 } });
    const clients = [await connectedClient(actor.actorId), await connectedClient(actor.actorId)];
    const before = (await probeState(actor.actorId)).connections;
    expect(before).toHaveLength(2);
    await sleepNow(actor.actorId);
    expect(await rowsOf('gateway_id', GATEWAY_ID)).toHaveLength(2);

    gateway.kill('SIGKILL');
    await gateway.exited;
    for (const c of clients) expect((await c.waitForClose()).code).toBe(1006);
    await gateway.restart();
    // Cleared by its registration, well before T or the sweep (which does not tick here).
    expect(await gatewayIdOf(stack.gatewayUrl)).toBe(GATEWAY_ID);
    expect(await rowsOf('gateway_id', GATEWAY_ID)).toEqual([]);

    // The actor's next start (a request wakes it once the runner is back) reports the old
    // connections gone, once each; a client reconnects.
    expect((await probeState(actor.actorId)).generation).toBe(2);
    const again = await connectedClient(actor.actorId);
    const state = await probeState(actor.actorId);
    expect(state.generation).toBe(2);
    expect(state.connections).toHaveLength(1);
    expect(before).not.toContain(state.connections[0]);
    expect(state.disconnects).toEqual(Object.fromEntries(before.map((id) => [id, 1])));
    again.close();
  });
});
