/**
 * `cold-start`: from `POST /actors` (a new `chat` actor, a key of its own) to the actor's first
 * HTTP reply (`GET /actors/:id/http/state` through the gateway, which holds the request until
 * the actor runs). Against the baseline workflow (bench/baseline.ts): the same three activities
 * an actor start runs, with none of the work.
 */
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
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

type ColdStartFlags = SampleFlags & StackFlags;

/** One iteration's bound: the gateway itself gives up on a start after its wake timeout (90 s). */
const ITERATION_TIMEOUT_MS = 60_000;
/**
 * The actors stay awake for the whole run (default idle sleep: 30 s): otherwise the early ones
 * would go to sleep during later iterations, and their stops would run in the measured window.
 */
const STAY_AWAKE_INPUT = { sleepAfterMs: 60 * 60_000 };

export const coldStart: Benchmark<ColdStartFlags> = {
  name: 'cold-start',
  description: "POST /actors to the actor's first HTTP reply, vs a workflow of three no-op activities",
  declareFlags(command: Command) {
    declareSampleFlags(command, { n: 200, warmup: 5 });
    declareStackFlags(command, { workers: 1, runners: 1 });
  },
  run(flags, context) {
    return withBenchStack(flags, context, async (stack) => {
      const baseline = await startBaseline(stack);
      try {
        const runId = randomBytes(4).toString('hex');
        const samples = await measureInterleaved(
          (i, signal) => createAndReach(stack.gatewayUrl, `cold-start-${runId}-${i}`, signal),
          () => baseline.run(),
          flags,
          context,
        );
        return [figureOf('cold-start', BASELINE_NAME, samples)];
      } finally {
        await baseline.close();
      }
    });
  },
};

/** Creates an actor and waits for its first reply: the timed section of one iteration. */
export async function createAndReach(gatewayUrl: string, key: string, stop: AbortSignal): Promise<void> {
  const signal = AbortSignal.any([stop, AbortSignal.timeout(ITERATION_TIMEOUT_MS)]);
  const actorId = await createChat(gatewayUrl, key, signal);
  const state = (await expectJson(await fetch(`${gatewayUrl}/actors/${actorId}/http/state`, { signal }), 200)) as {
    generation?: unknown;
  };
  // A reply from the actor itself, not from the gateway: the chat actor reports its generation.
  if (typeof state.generation !== 'number')
    throw new Error(`GET /state answered ${JSON.stringify(state)}, not the chat actor's state`);
}

/** `POST /actors` of a new `chat` actor (of `pool`, else the default) that stays awake until told otherwise; its id. */
export async function createChat(gatewayUrl: string, key: string, signal: AbortSignal, pool?: string): Promise<string> {
  const created = (await expectJson(
    await fetch(`${gatewayUrl}/actors`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'chat', key, input: STAY_AWAKE_INPUT, ...(pool === undefined ? {} : { pool }) }),
      signal,
    }),
    201,
  )) as { actor: { actorId: string } };
  return created.actor.actorId;
}

/** The response's JSON body, or an error naming the URL, status and body if the status is not `status`. */
export async function expectJson(response: Response, status: number): Promise<unknown> {
  const text = await response.text();
  if (response.status !== status)
    throw new Error(`${response.url}: expected ${status}, got ${response.status}: ${text}`);
  return JSON.parse(text) as unknown;
}
