/**
 * `resting-memory` (issue 11, DESIGN §4.1): what an actor costs its runner while it rests in
 * place, against the same actor active. One runner process (examples/runner.ts, the demo `chat`
 * actor) with its inspector open, `--actors` `chat` actors on it, in two phases on the same actors:
 *
 * 1. every actor active: each was created with `restAfterMs` = `--rest-after-ms` (default 2 min)
 *    and handled a first message; once all exist, each gets one more message, so that none has
 *    rested since (creating 10,000 takes longer than the rest time); measured as soon as every
 *    one has answered (its broadcast came back: its instance is built), which must be within
 *    `--rest-after-ms` of the first of those messages, else the run fails (raise
 *    `--rest-after-ms`). Not when the workflows say so: each `active` report is a workflow
 *    task, and 10,000 of them keep the dev server busy for minutes;
 * 2. every actor resting: once the workflows of all of them say so (the `ActorState` search
 *    attribute, counted; the same backlog, hence ALL_RESTING_MARGIN_MS), measured again.
 *
 * Each actor holds state (two chat messages) and, for the first `--sockets` of them (default:
 * all), one hibernatable WebSocket from the bench, named (an attachment): what a resting actor
 * keeps of a connection is its record. The others take their messages over HTTP.
 *
 * Two figures, per actor, resting against active, each net of the same runner with no actor,
 * measured after a warm-up (WARMUP_ACTORS actors run through start, messages, rest and rebuild,
 * then destroyed), so that code compiled on first use does not count as the actors':
 * - `resting-memory.heap-per-actor`: the runner's heap in use plus external memory after a full
 *   garbage collection (bench/inspector.ts): what the actors hold;
 * - `resting-memory.rss-per-actor`: the runner's resident memory (VmRSS), read just after that
 *   collection. Coarse: V8 keeps or returns pages as it likes, so below thousands of actors it is
 *   noise (it can come out negative); the heap figure is the one to judge.
 *
 * The stack's environment: DORMOUSE_RUNNER_MAX_CAPACITY (gateway side) is `--actors` plus the
 * warm-up's, and the measured runner's DORMOUSE_RUNNER_CAPACITY too: every actor fits on it.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import type { Command, OptionValues } from 'commander';
import { freePort } from '../dev/free-port.js';
import type { LocalStack } from '../dev/local-stack.js';
import type { NodeProcess } from '../dev/processes.js';
import { waitFor } from '../dev/wait.js';
import { processRss, retainedBytes } from './inspector.js';
import {
  nonNegativeInt,
  positiveInt,
  quantityOf,
  runConcurrently,
  withBenchStack,
  type BenchContext,
  type Benchmark,
  type Figure,
} from './benchmark.js';
import { createChat, expectJson } from './cold-start.js';
import { closeSockets } from './workerd.js';
import { ChatRoom } from './wake-in-place.js';

interface RestingMemoryFlags extends OptionValues {
  actors: number;
  /** Undefined: every actor holds a socket. */
  sockets?: number;
  concurrency: number;
  restAfterMs: number;
  workers: number;
}

const RUNNER_SCRIPT = fileURLToPath(new URL('../examples/runner.ts', import.meta.url));
/** One request's bound: the gateway itself gives up on a start after its wake timeout (90 s). */
const REQUEST_TIMEOUT_MS = 60_000;
/**
 * How long the last actors may take to be seen resting once their rest time has passed: each
 * actor's `active` and `resting` reports are workflow tasks, a few dozen a second here.
 */
const ALL_RESTING_MARGIN_MS = 20 * 60_000;
/** Bound on one step of the warm-up. */
const STEP_TIMEOUT_MS = 60_000;
/** Actors run through every path before the runner's memory with no actor is measured. */
const WARMUP_ACTORS = 20;
const WARMUP_REST_MS = 1000;
/** Long enough never to sleep during a run. */
const NEVER_SLEEP_MS = 24 * 60 * 60_000;

export const restingMemory: Benchmark<RestingMemoryFlags> = {
  name: 'resting-memory',
  description: 'runner memory per actor with N actors resting in place, vs the same actors active',
  declareFlags(command: Command) {
    command
      .option('--actors <count>', 'chat actors on the measured runner', positiveInt, 10_000)
      .option('--sockets <count>', 'of those, how many hold one hibernatable WebSocket (default: all)', nonNegativeInt)
      .option('--concurrency <count>', 'actors created (or messaged) at a time', positiveInt, 50)
      .option('--rest-after-ms <ms>', "the actors' idle time before they rest", positiveInt, 120_000)
      .option('--workers <count>', 'Dormouse worker processes', positiveInt, 2);
  },
  run(flags, context) {
    const env = { DORMOUSE_RUNNER_MAX_CAPACITY: String(capacityFor(flags)) };
    return withBenchStack(
      { workers: flags.workers, runners: 0 },
      context,
      (stack) => measure(stack, flags, context),
      env,
    );
  },
};

async function measure(stack: LocalStack, flags: RestingMemoryFlags, context: BenchContext): Promise<Figure[]> {
  const { log } = context;
  const runner = await startMeasuredRunner(stack, capacityFor(flags));
  const connection = await Connection.connect({ address: stack.temporalAddress });
  const fleet = new Fleet(stack.gatewayUrl, new Client({ connection, namespace: stack.namespace }), flags, context);
  try {
    await fleet.warmUp();
    const empty = await memoryOf(runner);
    log.info(megabytes(empty), 'the runner, warmed up, with no actor');

    await fleet.create({ restAfterMs: flags.restAfterMs, sleepAfterMs: NEVER_SLEEP_MS });
    log.info('one more message to every actor: all active');
    const touched = performance.now();
    await fleet.messageAll('again');
    const active = await memoryOf(runner);
    const activeFor = performance.now() - touched;
    if (activeFor >= flags.restAfterMs)
      throw new Error(
        `messaging and measuring took ${Math.round(activeFor)} ms: some actors may rest already; raise --rest-after-ms`,
      );
    log.info(megabytes(active), 'every actor active');

    log.info({ restAfterMs: flags.restAfterMs }, 'waiting for every actor to rest');
    await fleet.waitForCount('resting', flags.actors, flags.restAfterMs + ALL_RESTING_MARGIN_MS);
    const resting = await memoryOf(runner);
    log.info(megabytes(resting), 'every actor resting');

    const perActor = (memory: Memory, which: keyof Memory) => (memory[which] - empty[which]) / flags.actors;
    return (['heap', 'rss'] as const).map((which) =>
      quantityOf(
        `resting-memory.${which}-per-actor`,
        flags.actors,
        { value: perActor(resting, which), unit: 'bytes' },
        { name: 'active', value: perActor(active, which) },
      ),
    );
  } finally {
    await fleet.close();
    await connection.close();
  }
}

/** The benchmark's actors, and what the actor workflows say of them (their ActorState, counted). */
class Fleet {
  private readonly actors: Resident[] = [];
  private readonly sockets: number;
  private readonly keyPrefix = `resting-memory-${randomBytes(4).toString('hex')}-`;

  constructor(
    private readonly gatewayUrl: string,
    private readonly temporal: Client,
    private readonly flags: RestingMemoryFlags,
    private readonly context: BenchContext,
  ) {
    this.sockets = Math.min(flags.sockets ?? flags.actors, flags.actors);
  }

  /**
   * Runs WARMUP_ACTORS actors through everything the measured ones will do (start, messages,
   * rest, rebuild), then destroys them: code compiled on first use and buffers grown once stay
   * out of the per-actor figures.
   */
  async warmUp(): Promise<void> {
    const { signal } = this.context;
    const input = { restAfterMs: WARMUP_REST_MS, sleepAfterMs: NEVER_SLEEP_MS };
    const withSocket = this.sockets > 0;
    const warm = await Promise.all(
      Array.from({ length: WARMUP_ACTORS }, (_, i) =>
        Resident.create(this.gatewayUrl, `${this.keyPrefix}warm-${i}`, input, withSocket, signal),
      ),
    );
    try {
      await this.waitForCount('resting', WARMUP_ACTORS, WARMUP_REST_MS + STEP_TIMEOUT_MS);
      await Promise.all(warm.map((actor) => actor.message('again')));
      await Promise.all(warm.map((actor) => actor.destroy()));
      await this.waitForCount('destroyed', WARMUP_ACTORS, STEP_TIMEOUT_MS);
    } finally {
      await closeSockets(warm.flatMap((actor) => (actor.room ? [actor.room.socket] : [])));
    }
    this.context.log.info({ actors: WARMUP_ACTORS }, 'warmed up');
  }

  /** Creates `--actors` actors with `input`, the first `--sockets` of them with a socket; one message each. */
  async create(input: object): Promise<void> {
    const { actors, concurrency } = this.flags;
    this.context.log.info({ actors, sockets: this.sockets, concurrency }, 'creating the actors');
    const run = await runConcurrently(
      actors,
      concurrency,
      async (i, stop) =>
        void (this.actors[i] = await Resident.create(
          this.gatewayUrl,
          `${this.keyPrefix}${i}`,
          input,
          i < this.sockets,
          stop,
        )),
      this.context,
    );
    this.context.log.info({ seconds: run.elapsedMs / 1000 }, 'created');
  }

  async messageAll(text: string): Promise<void> {
    const run = await runConcurrently(
      this.actors.length,
      this.flags.concurrency,
      (i) => this.actors[i]!.message(text),
      this.context,
    );
    this.context.log.info({ seconds: run.elapsedMs / 1000 }, 'every actor messaged');
  }

  /** Waits (bounded) until `expected` actor workflows show `state` (visibility lags a little behind). */
  async waitForCount(state: string, expected: number, timeoutMs: number): Promise<void> {
    await waitFor(async () => (await this.temporal.workflow.count(`ActorState = '${state}'`)).count === expected, {
      timeoutMs,
      intervalMs: 500,
      message: `${expected} actors ${state}`,
      signal: this.context.signal,
    });
  }

  async close(): Promise<void> {
    await closeSockets(this.actors.flatMap((actor) => (actor.room ? [actor.room.socket] : [])));
  }
}

/** A `chat` actor of this benchmark: reached over its own socket, or over HTTP when it has none. */
class Resident {
  private constructor(
    private readonly gatewayUrl: string,
    readonly actorId: string,
    readonly room: ChatRoom | undefined,
  ) {}

  /** Creates the actor with `input` and gives it its first message. */
  static async create(
    gatewayUrl: string,
    key: string,
    input: object,
    withSocket: boolean,
    signal: AbortSignal,
  ): Promise<Resident> {
    if (withSocket) {
      const room = await ChatRoom.open(gatewayUrl, key, input, signal);
      return new Resident(gatewayUrl, room.actorId, room);
    }
    const bounded = AbortSignal.any([signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]);
    const actorId = await createChat(gatewayUrl, key, bounded, undefined, input);
    const resident = new Resident(gatewayUrl, actorId, undefined);
    await resident.message('hello');
    return resident;
  }

  async destroy(): Promise<void> {
    const url = `${this.gatewayUrl}/actors/${this.actorId}`;
    await expectJson(await fetch(url, { method: 'DELETE', signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }), 202);
  }

  async message(text: string): Promise<void> {
    if (this.room) return this.room.message(text);
    await expectJson(
      await fetch(`${this.gatewayUrl}/actors/${this.actorId}/http/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ from: 'bench', text }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      }),
      201,
    );
  }
}

/** Every actor of a run at once on the one runner, the warm-up's too (they may not be gone yet). */
function capacityFor(flags: RestingMemoryFlags): number {
  return flags.actors + WARMUP_ACTORS;
}

interface MeasuredRunner {
  proc: NodeProcess;
  inspectorPort: number;
}

/** A runner of the demo actors for `capacity` actors, its inspector open on a free port. */
async function startMeasuredRunner(stack: LocalStack, capacity: number): Promise<MeasuredRunner> {
  const inspectorPort = await freePort();
  const proc = await stack.startProcess({
    name: 'runner-measured',
    script: RUNNER_SCRIPT,
    env: { DORMOUSE_RUNNER_CAPACITY: String(capacity), NODE_OPTIONS: `--inspect=127.0.0.1:${inspectorPort}` },
  });
  return { proc, inspectorPort };
}

interface Memory {
  /** VmRSS, bytes. */
  rss: number;
  /** Heap in use plus external memory after a full collection, bytes. */
  heap: number;
}

/** The runner's memory: a full garbage collection first (which also lets V8 give pages back), then VmRSS. */
async function memoryOf(runner: MeasuredRunner): Promise<Memory> {
  const heap = await retainedBytes(runner.inspectorPort);
  return { heap, rss: await processRss(runner.proc.pid) };
}

function megabytes(memory: Memory): { rssMiB: number; heapMiB: number } {
  const mib = (bytes: number) => Math.round((bytes / (1024 * 1024)) * 10) / 10;
  return { rssMiB: mib(memory.rss), heapMiB: mib(memory.heap) };
}
