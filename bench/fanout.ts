/**
 * `fanout`: one `chat` room broadcasting to `--clients` WebSockets (default 1,000) spread evenly
 * over two gateways, its runner on one of them, against a room with as many clients all on its
 * runner's gateway: frames delivered per second and per-frame delivery latency.
 *
 * One stack of two gateways (sharing a NATS) with both rooms on it, their clients open together
 * for the whole run: same servers, same load. Each iteration sends one message to each room
 * (`POST /actors/:id/http/messages` through the room's runner's gateway, which the chat actor
 * broadcasts like a WebSocket message) and waits until every client of that room has received
 * it; which room goes first alternates (measureInterleaved), one message in flight at a time.
 *
 * A frame's latency runs from just before the POST to its receipt at one client; frames/s is the
 * frames delivered divided by the time from the POSTs to the last receipt of each message. Three
 * lines, each with `n` the frames measured (clients × messages): frames/s, the latency figure
 * (median, p99; its ratio is the medians'), and the p99 alone with the p99s' ratio.
 */
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import pg from 'pg';
import type WebSocket from 'ws';
import { waitFor } from '../dev/wait.js';
import { wsText } from '../src/util/ws-data.js';
import {
  declareSampleFlags,
  declareStackFlags,
  figureOf,
  measureInterleaved,
  positiveInt,
  quantityOf,
  withBenchStack,
  type Benchmark,
  type SampleFlags,
  type StackFlags,
} from './benchmark.js';
import { expectJson } from './cold-start.js';
import { openPlacedRoom, type PlacedRoom } from './gateways.js';
import { openSockets, wsBase } from './hibernating-sockets.js';

interface FanoutFlags extends SampleFlags, StackFlags {
  clients: number;
}

/** Bound on one message reaching every client of its room. */
const BROADCAST_TIMEOUT_MS = 60_000;
const BASELINE = 'one gateway';

export const fanout: Benchmark<FanoutFlags> = {
  name: 'fanout',
  description: 'one actor broadcasting to N sockets over two gateways vs all on one: frames/s and latency',
  declareFlags(command: Command) {
    command.option('--clients <count>', 'WebSocket clients of each room', positiveInt, 1000);
    declareSampleFlags(command, { n: 50, warmup: 5 });
    declareStackFlags(command, { workers: 1, runners: 1 });
  },
  run(flags, context) {
    return withBenchStack({ ...flags, gateways: 2 }, context, async (stack) => {
      const db = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
      const audiences: Audience[] = [];
      try {
        const runId = randomBytes(4).toString('hex');
        const half = Math.floor(flags.clients / 2);
        const spreadRoom = await openPlacedRoom(stack, db, `fanout-spread-${runId}`, context.signal);
        const spread = await Audience.open(spreadRoom, [
          [spreadRoom.runnerGateway, flags.clients - half],
          [spreadRoom.otherGateway, half],
        ]);
        audiences.push(spread);
        const oneRoom = await openPlacedRoom(stack, db, `fanout-one-${runId}`, context.signal);
        const one = await Audience.open(oneRoom, [[oneRoom.runnerGateway, flags.clients]]);
        audiences.push(one);
        context.log.info({ clients: flags.clients, spreadOver: stack.gatewayUrls }, 'both rooms have their clients');

        const latencies = { subject: [] as number[], baseline: [] as number[] };
        const iteration = (audience: Audience, into: number[]) => async (i: number, signal: AbortSignal) => {
          const round = await audience.broadcast(`message ${i}`, signal);
          if (i >= flags.warmup) into.push(...round.latencies);
          return round.elapsedMs;
        };
        const rounds = await measureInterleaved(
          iteration(spread, latencies.subject),
          iteration(one, latencies.baseline),
          flags,
          context,
        );
        const framesPerSecond = (elapsed: number[]) =>
          (flags.clients * elapsed.length * 1000) / elapsed.reduce((a, b) => a + b, 0);
        const latency = figureOf('fanout.latency', BASELINE, latencies);
        // The baseline's p99, from the same figure with the roles swapped.
        const baselineP99 = figureOf('fanout.latency', '', {
          subject: latencies.baseline,
          baseline: latencies.subject,
        }).p99_ms;
        return [
          quantityOf(
            'fanout.frames-per-second',
            latency.n,
            { value: framesPerSecond(rounds.subject), unit: 'frames/s' },
            { name: BASELINE, value: framesPerSecond(rounds.baseline) },
          ),
          latency,
          quantityOf(
            'fanout.p99-latency',
            latency.n,
            { value: latency.p99_ms, unit: 'ms' },
            { name: BASELINE, value: baselineP99 },
          ),
        ];
      } finally {
        for (const audience of audiences) audience.close();
        await db.end();
      }
    });
  },
};

/** The clients of one room, and the message they are all waiting for. */
class Audience {
  private awaited:
    { text: string; start: number; latencies: number[]; done: () => void; fail: (err: Error) => void } | undefined;

  private constructor(
    private readonly room: PlacedRoom,
    private readonly clients: WebSocket[],
  ) {
    for (const ws of clients) ws.on('message', (data) => this.receive(data));
  }

  /** Opens the room's clients, `count` on each gateway, and waits until the room counts them all. */
  static async open(room: PlacedRoom, placement: [gatewayUrl: string, count: number][]): Promise<Audience> {
    const clients: WebSocket[] = [];
    for (const [gatewayUrl, count] of placement)
      clients.push(...(await openSockets(`${wsBase(gatewayUrl)}/actors/${room.actorId}/ws?name=bench`, count)));
    const url = `${room.runnerGateway}/actors/${room.actorId}/http/state`;
    await waitFor(
      async () => ((await expectJson(await fetch(url), 200)) as { connections: number }).connections === clients.length,
      {
        timeoutMs: BROADCAST_TIMEOUT_MS,
        intervalMs: 200,
        message: `${clients.length} clients in room ${room.actorId}`,
      },
    );
    return new Audience(room, clients);
  }

  /** Sends `text` to the room; resolves when every client has its broadcast. */
  async broadcast(text: string, stop: AbortSignal): Promise<{ latencies: number[]; elapsedMs: number }> {
    const signal = AbortSignal.any([stop, AbortSignal.timeout(BROADCAST_TIMEOUT_MS)]);
    const latencies: number[] = [];
    const start = performance.now();
    let end = start;
    let onAbort = () => {};
    const delivered = new Promise<void>((resolve, reject) => {
      const done = () => {
        end = performance.now();
        resolve();
      };
      this.awaited = { text, start, latencies, done, fail: reject };
      onAbort = () => reject(new Error(`"${text}" reached ${latencies.length} of ${this.clients.length} clients`));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const posted = fetch(`${this.room.runnerGateway}/actors/${this.room.actorId}/http/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ from: 'bench', text }),
        signal,
      }).then((response) => expectJson(response, 201));
      await Promise.all([posted, delivered]);
    } finally {
      this.awaited = undefined;
      signal.removeEventListener('abort', onAbort);
    }
    return { latencies, elapsedMs: end - start };
  }

  close(): void {
    for (const ws of this.clients) ws.terminate();
  }

  private receive(data: WebSocket.RawData): void {
    const now = performance.now();
    const awaited = this.awaited;
    if (!awaited) return;
    const { text } = JSON.parse(wsText(data)) as { text: string };
    if (text !== awaited.text)
      return awaited.fail(new Error(`expected the broadcast of "${awaited.text}", got "${text}"`));
    awaited.latencies.push(now - awaited.start);
    if (awaited.latencies.length === this.clients.length) awaited.done();
  }
}
