/**
 * `wake`: a message from a client whose socket hibernates, to a sleeping `chat` room, until the
 * room's broadcast of it reaches the client: wake, start (with the socket restored), process,
 * persist, broadcast. Against the baseline workflow of bench/baseline.ts (three no-op
 * activities: the shape of a start with none of its work), as cold-start is (issue 10).
 *
 * Each iteration first puts the room to sleep (untimed), then times one message.
 */
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import WebSocket from 'ws';
import { waitFor } from '../dev/wait.js';
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
import { BASELINE_NAME, startBaseline } from './baseline.js';
import { wsText } from '../src/util/ws-data.js';

type WakeFlags = SampleFlags & StackFlags;

const STEP_TIMEOUT_MS = 60_000;

export const wake: Benchmark<WakeFlags> = {
  name: 'wake',
  description:
    'a message to a sleeping actor until its broadcast reaches the client, vs a workflow of three no-op activities',
  declareFlags(command: Command) {
    declareSampleFlags(command, { n: 200, warmup: 5 });
    declareStackFlags(command, { workers: 1, runners: 1 });
  },
  run(flags, context) {
    return withBenchStack(flags, context, async (stack) => {
      const runId = randomBytes(4).toString('hex');
      const baseline = await startBaseline(stack);
      const room = await Room.open(stack.gatewayUrl, `wake-${runId}`);
      try {
        const samples = await measureInterleaved(
          (i) => room.timeWake(`message ${i}`),
          () => baseline.run(),
          flags,
          context,
        );
        return [figureOf('wake', BASELINE_NAME, samples)];
      } finally {
        room.close();
        await baseline.close();
      }
    });
  },
};

/** One chat room with one hibernatable client connected. */
class Room {
  private constructor(
    private readonly gatewayUrl: string,
    private readonly actorId: string,
    private readonly ws: WebSocket,
  ) {}

  static async open(gatewayUrl: string, key: string): Promise<Room> {
    const response = await fetch(`${gatewayUrl}/actors`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      // Asleep only when the benchmark says so.
      body: JSON.stringify({ name: 'chat', key, input: { sleepAfterMs: 60 * 60_000 } }),
    });
    const { actor } = (await response.json()) as { actor: { actorId: string } };
    const ws = new WebSocket(`${gatewayUrl.replace(/^http/, 'ws')}/actors/${actor.actorId}/ws?name=bench`);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const room = new Room(gatewayUrl, actor.actorId, ws);
    await room.message('hello');
    return room;
  }

  /** Puts the room to sleep (untimed), then times one message until its broadcast comes back. */
  async timeWake(text: string): Promise<number> {
    await this.sleep();
    const start = performance.now();
    await this.message(text);
    return performance.now() - start;
  }

  close(): void {
    this.ws.close();
  }

  /** Sends one message and resolves when its broadcast arrives (the only traffic on the socket). */
  private message(text: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no broadcast of "${text}" within ${STEP_TIMEOUT_MS} ms`)),
        STEP_TIMEOUT_MS,
      );
      this.ws.once('message', (data) => {
        clearTimeout(timer);
        const { text: echoed } = JSON.parse(wsText(data)) as { text: string };
        if (echoed === text) resolve();
        else reject(new Error(`expected the broadcast of "${text}", got "${echoed}"`));
      });
      this.ws.send(text);
    });
  }

  private async sleep(): Promise<void> {
    const url = `${this.gatewayUrl}/actors/${this.actorId}`;
    const response = await fetch(`${url}/sleep`, { method: 'POST' });
    if (response.status !== 202) throw new Error(`sleep answered ${response.status}`);
    await waitFor(
      async () => ((await (await fetch(url)).json()) as { actor: { state: string } }).actor.state === 'sleeping',
      { timeoutMs: STEP_TIMEOUT_MS, intervalMs: 20, message: 'the room asleep' },
    );
  }
}
