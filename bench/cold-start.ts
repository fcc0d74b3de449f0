/**
 * `cold-start`: from `POST /actors` (a new `chat` actor, a key of its own) to the actor's first
 * HTTP reply (`GET /actors/:id/http/state` through the gateway, which holds the request until
 * the actor runs). Against the baseline workflow (bench/baseline.ts): the same three activities
 * an actor start runs, with none of the work.
 *
 * Beside it, unless `--no-workerd`: the same samples against a never-used Durable Object's first
 * reply in `workerd` (bench/workerd.ts, measured after them in the same run), the figure
 * `cold-start-vs-workerd` (issue 11).
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
  type Figure,
  type SampleFlags,
  type Samples,
  type StackFlags,
} from './benchmark.js';
import { BASELINE_NAME, startBaseline } from './baseline.js';
import { measureDoColdStart, withWorkerd } from './workerd.js';

interface ColdStartFlags extends SampleFlags, StackFlags {
  /** false with `--no-workerd`: no Durable Object figure. */
  workerd: boolean;
}

/** One iteration's bound: the gateway itself gives up on a start after its wake timeout (90 s). */
const ITERATION_TIMEOUT_MS = 60_000;
/**
 * The actors stay awake and active for the whole run (default idle rest 10 s, sleep 5 min):
 * otherwise the early ones would rest or sleep during later iterations, and their `resting`
 * events or stops would run in the measured window.
 */
const STAY_AWAKE_INPUT = { restAfterMs: 60 * 60_000, sleepAfterMs: 60 * 60_000 };

export const coldStart: Benchmark<ColdStartFlags> = {
  name: 'cold-start',
  description: "POST /actors to the actor's first HTTP reply, vs a workflow of three no-op activities",
  declareFlags(command: Command) {
    declareSampleFlags(command, { n: 200, warmup: 5 });
    declareStackFlags(command, { workers: 1, runners: 1 });
    command.option('--no-workerd', "skip the figure against workerd's Durable Object cold start");
  },
  run(flags, context) {
    return withBenchStack(flags, context, async (stack) => {
      const baseline = await startBaseline(stack);
      let samples: Samples;
      try {
        const runId = randomBytes(4).toString('hex');
        samples = await measureInterleaved(
          (i, signal) => createAndReach(stack.gatewayUrl, `cold-start-${runId}-${i}`, signal),
          () => baseline.run(),
          flags,
          context,
        );
      } finally {
        await baseline.close();
      }
      const figures: Figure[] = [figureOf('cold-start', BASELINE_NAME, samples)];
      if (flags.workerd) {
        const durableObject = await withWorkerd(context, (url) =>
          measureDoColdStart(url, flags.n, { ...context, warmup: flags.warmup }),
        );
        figures.push(
          figureOf('cold-start-vs-workerd', 'workerd-do-cold-start', {
            subject: samples.subject,
            baseline: durableObject.subject,
          }),
        );
      }
      return figures;
    });
  },
};

/** Creates an actor and waits for its first reply: the timed section of one iteration. */
export async function createAndReach(gatewayUrl: string, key: string, stop: AbortSignal): Promise<void> {
  const signal = AbortSignal.any([stop, AbortSignal.timeout(ITERATION_TIMEOUT_MS)]);
  await reachChat(gatewayUrl, await createChat(gatewayUrl, key, signal), signal);
}

/** `GET /actors/:id/http/state` until the chat actor's own reply (the gateway holds it while the actor starts). */
export async function reachChat(gatewayUrl: string, actorId: string, signal: AbortSignal): Promise<void> {
  const state = (await expectJson(await fetch(`${gatewayUrl}/actors/${actorId}/http/state`, { signal }), 200)) as {
    generation?: unknown;
  };
  // A reply from the actor itself, not from the gateway: the chat actor reports its generation.
  if (typeof state.generation !== 'number')
    throw new Error(`GET /state answered ${JSON.stringify(state)}, not the chat actor's state`);
}

/**
 * `POST /actors` of a new `chat` actor (of `pool`, else the default) with `input`, by default one
 * that stays awake and active until told otherwise; its id.
 */
export async function createChat(
  gatewayUrl: string,
  key: string,
  signal: AbortSignal,
  pool?: string,
  input: object = STAY_AWAKE_INPUT,
): Promise<string> {
  const created = (await expectJson(
    await fetch(`${gatewayUrl}/actors`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'chat', key, input, ...(pool === undefined ? {} : { pool }) }),
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
