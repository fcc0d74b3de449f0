/**
 * `cross-gateway`: a WebSocket round trip (a client's message to a `chat` room until the room's
 * broadcast of it comes back to that client) with the client on the gateway without the room's
 * runner, so that the frames cross NATS both ways, against the same with the client on the
 * runner's gateway. Issue 9's goal: a ratio of at most 1.5 (reported, not asserted).
 *
 * One stack of two gateways (sharing a NATS); two rooms on it, one client each, so that neither
 * client sees the other's broadcasts. Interleaved (measureInterleaved), one message in flight.
 */
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import pg from 'pg';
import type WebSocket from 'ws';
import { wsText } from '../src/util/ws-data.js';
import {
  declareSampleFlags,
  declareStackFlags,
  figureOf,
  measureInterleaved,
  withBenchStack,
  type Benchmark,
  type SampleFlags,
  type StackFlags,
} from './benchmark.js';
import { openPlacedRoom } from './gateways.js';
import { openSockets, wsBase } from './hibernating-sockets.js';

type CrossGatewayFlags = SampleFlags & StackFlags;

/** Bound on one round trip. */
const ROUND_TRIP_TIMEOUT_MS = 60_000;

export const crossGateway: Benchmark<CrossGatewayFlags> = {
  name: 'cross-gateway',
  description: "WebSocket round trip with the client on another gateway than the actor's runner, vs on the same",
  declareFlags(command: Command) {
    declareSampleFlags(command, { n: 200, warmup: 10 });
    declareStackFlags(command, { workers: 1, runners: 1 });
  },
  run(flags, context) {
    return withBenchStack({ ...flags, gateways: 2 }, context, async (stack) => {
      const db = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
      const clients: WebSocket[] = [];
      try {
        const runId = randomBytes(4).toString('hex');
        const connect = async (key: string, placement: 'runnerGateway' | 'otherGateway') => {
          const room = await openPlacedRoom(stack, db, key, context.signal);
          const [ws] = await openSockets(`${wsBase(room[placement])}/actors/${room.actorId}/ws?name=bench`, 1);
          clients.push(ws!);
          context.log.info({ room: room.actorId, runnerGateway: room.runnerGateway, client: room[placement] }, key);
          return ws!;
        };
        const remote = await connect(`cross-gateway-remote-${runId}`, 'otherGateway');
        const local = await connect(`cross-gateway-local-${runId}`, 'runnerGateway');
        const samples = await measureInterleaved(
          (i, signal) => roundTrip(remote, `message ${i}`, signal),
          (i, signal) => roundTrip(local, `message ${i}`, signal),
          flags,
          context,
        );
        return [figureOf('cross-gateway', "client on the runner's gateway", samples)];
      } finally {
        for (const ws of clients) ws.terminate();
        await db.end();
      }
    });
  },
};

/** Sends `text` and resolves when its broadcast comes back (the only traffic on the socket). */
function roundTrip(ws: WebSocket, text: string, stop: AbortSignal): Promise<void> {
  const signal = AbortSignal.any([stop, AbortSignal.timeout(ROUND_TRIP_TIMEOUT_MS)]);
  return new Promise((resolve, reject) => {
    const settle = (err?: Error) => {
      ws.off('message', onMessage);
      signal.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    const onMessage = (data: WebSocket.RawData) => {
      const { text: echoed } = JSON.parse(wsText(data)) as { text: string };
      settle(echoed === text ? undefined : new Error(`expected the broadcast of "${text}", got "${echoed}"`));
    };
    const onAbort = () => settle(new Error(`no broadcast of "${text}" within ${ROUND_TRIP_TIMEOUT_MS} ms`));
    ws.on('message', onMessage);
    signal.addEventListener('abort', onAbort, { once: true });
    ws.send(text);
  });
}
