/**
 * The client-socket hub with a real client WebSocket and fakes for the registry, the runners and
 * the Waker: a hibernating socket whose offer fails goes back to hibernating the normal way, so
 * its waiting messages wake the actor again instead of waiting forever.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { loadConfig } from '../../src/config.js';
import type { Db, Queryable } from '../../src/db/pool.js';
import type { ActorRouter } from '../../src/gateway/actor-router.js';
import type { ClientSocket } from '../../src/gateway/client-socket.js';
import { ClientSocketHub } from '../../src/gateway/client-sockets.js';
import { HibernationRegistry } from '../../src/gateway/hibernation-registry.js';
import type { Waker } from '../../src/gateway/wakes.js';
import { createLogger } from '../../src/log.js';
import type { GatewayToRunner, RunnerTunnelMessage } from '../../src/protocol/runner-protocol.js';
import { waitFor } from '../harness/wait.js';

const log = createLogger('test', 'silent');
const actorId = randomUUID();

/** Answers the hub's queries: the actor's row, no other hibernating sockets, writes accepted. */
const db = {
  query: async (sql: string) => {
    if (sql.includes('count(*)')) return { rows: [{ n: 0 }], rowCount: 1 };
    if (sql.includes('FROM actors')) {
      const row = { actor_id: actorId, name: 'chat', state: 'running', generation: 1, created_at: new Date() };
      return { rows: [row], rowCount: 1 };
    }
    return { rows: [], rowCount: 1 };
  },
} as unknown as Queryable;

let server: Server | undefined;
let client: WebSocket | undefined;
afterEach(() => {
  vi.useRealTimers();
  client?.close();
  server?.close();
});

async function hubWithClient() {
  // The hub's deadline ticker (which also re-asks for wakes) stays still: the offer's own outcome must wake.
  vi.useFakeTimers({ toFake: ['setInterval'] });
  const frames: { runnerId: string; frame: GatewayToRunner }[] = [];
  const wake = vi.fn();
  const router = {
    route: (_id: string, _kind: string, send: (actor: { runnerId: string; generation: number }) => Promise<void>) =>
      send({ runnerId: 'r-1', generation: 1 }),
  } as unknown as ActorRouter;
  const hub = new ClientSocketHub({
    db: db as Db,
    config: loadConfig({}),
    log,
    gatewayId: 'gw-1',
    router,
    waker: { wake } as unknown as Waker,
    registry: new HibernationRegistry(db, 'gw-1'),
    sendToRunner: (runnerId, frame) => frames.push({ runnerId, frame }) > 0,
    isLocalRunner: () => true,
    announceSessionTaken: () => undefined,
  });
  server = createServer();
  server.on('upgrade', (request, socket, head) => hub.handleUpgrade(request, socket, head, actorId, '/'));
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  client = new WebSocket(`ws://127.0.0.1:${port}/actors/${actorId}/ws`);
  await new Promise((resolve, reject) => client!.once('open', resolve).once('error', reject));

  /** The last wsOpen sent to a runner. */
  const opened = () =>
    waitFor(
      () => {
        const open = frames.findLast((f) => f.frame.type === 'tunnel' && f.frame.message.kind === 'wsOpen');
        if (!open || open.frame.type !== 'tunnel') return undefined;
        return { runnerId: open.runnerId, requestId: open.frame.requestId, generation: open.frame.generation };
      },
      { timeoutMs: 5000, message: 'a wsOpen sent' },
    );
  const answer = (runnerId: string, requestId: string, generation: number, message: RunnerTunnelMessage) =>
    hub.fromRunner(runnerId, { type: 'tunnel', requestId, actorId, generation, message });
  return { hub, frames, wake, opened, answer };
}

describe('a hibernating socket offered to a new generation', () => {
  it('goes back to hibernating when the offer fails, and its waiting message wakes the actor again', async () => {
    const { hub, wake, opened, answer } = await hubWithClient();
    const first = await opened();
    answer('r-1', first.requestId, 1, { kind: 'wsOpenAck', hibernatable: true });
    const phase = () => (hub.held(first.requestId) as ClientSocket | undefined)?.phase;
    await waitFor(() => phase() === 'active', { timeoutMs: 5000, message: 'accepted' });

    // The actor sleeps; a message waits and wakes it.
    hub.onActorState({ actorId, state: 'sleeping', generation: 1, runnerId: null });
    expect(phase()).toBe('hibernating');
    client!.send('waiting');
    await waitFor(() => wake.mock.calls.length === 1, { timeoutMs: 5000, message: 'the first wake' });

    // Generation 2 runs without having restored the socket: it is offered, and the offer fails.
    hub.onActorState({ actorId, state: 'running', generation: 2, runnerId: 'r-2' });
    const offer = await waitFor(
      async () => {
        const open = await opened();
        return open.generation === 2 ? open : undefined;
      },
      { timeoutMs: 5000, message: 'the offer' },
    );
    expect(offer).toMatchObject({ runnerId: 'r-2', generation: 2, requestId: first.requestId });
    answer('r-2', offer.requestId, 2, { kind: 'notHosted', message: 'stopped meanwhile' });

    await waitFor(() => wake.mock.calls.length === 2, { timeoutMs: 5000, message: 'a wake after the failed offer' });
    expect(phase()).toBe('hibernating');
    await hub.close();
  });
});
