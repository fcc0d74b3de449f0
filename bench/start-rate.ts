/**
 * `start-rate`: how many actors the stack cold-starts per second under load. `--n` creates
 * (default: twice `--concurrency`), with `--concurrency` (default 500) in flight at all times,
 * each one `POST /actors` of a new `chat` actor until its first HTTP reply (createAndReach, as in
 * `cold-start`), on a stack of two workers, one gateway and two runners. Against the bare
 * three-activity workflow (bench/baseline.ts) started the same way, as many with as many in
 * flight, on the same server.
 *
 * Two figures: the rate (count / time from the first start to the last reply; actors/s against
 * workflows/s) and the latency of one create under that load (p50 and p99, against the bare
 * workflow's p50 under its load).
 *
 * The baseline runs first: an actor's workflow keeps working after its first reply (recording
 * its state), which would otherwise load the baseline's window. Both sides first run a few
 * operations one at a time, uncounted (JIT, connections). The baseline has one worker process,
 * Dormouse two: on this two-core machine the Temporal server, not the workers, is the bottleneck.
 *
 * The stack's environment: DORMOUSE_RUNNER_CAPACITY is the number of actors created (warm-up
 * included), so that either runner could host them all (they stay awake for the whole run; the
 * default, 1000 per runner, is below what larger runs create), and never does a create wait for a
 * free slot instead of for the start.
 */
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import {
  declareStackFlags,
  figureOf,
  nonNegativeInt,
  positiveInt,
  quantityOf,
  runConcurrently,
  withBenchStack,
  type Benchmark,
  type BenchContext,
  type ConcurrentRun,
  type StackFlags,
} from './benchmark.js';
import { BASELINE_NAME, startBaseline } from './baseline.js';
import { createAndReach } from './cold-start.js';

interface StartRateFlags extends StackFlags {
  concurrency: number;
  /** Unset: twice the concurrency. */
  n?: number;
  warmup: number;
}

export const startRate: Benchmark<StartRateFlags> = {
  name: 'start-rate',
  description: 'actors cold-started per second with N creates in flight, vs bare three-activity workflows',
  declareFlags(command: Command) {
    command
      .option('--concurrency <count>', 'creates in flight at all times', positiveInt, 500)
      .option('--n <count>', 'creates measured (default: twice the concurrency)', positiveInt)
      .option(
        '--warmup <count>',
        'creates (and baseline workflows) run first, one at a time, uncounted',
        nonNegativeInt,
        5,
      );
    declareStackFlags(command, { workers: 2, runners: 2 });
  },
  run(flags, context) {
    const n = flags.n ?? 2 * flags.concurrency;
    const env = { DORMOUSE_RUNNER_CAPACITY: String(n + flags.warmup) };
    return withBenchStack(
      flags,
      context,
      async (stack) => {
        const baseline = await startBaseline(stack, { executionTimeout: '10 minutes' });
        try {
          const runId = randomBytes(4).toString('hex');
          const create = (i: number, signal: AbortSignal) =>
            createAndReach(stack.gatewayUrl, `start-rate-${runId}-${i}`, signal);
          const warmupCreate = (i: number, signal: AbortSignal) => create(n + i, signal);

          context.log.info({ warmup: flags.warmup }, 'warming up, one at a time');
          await runConcurrently(flags.warmup, 1, () => baseline.run(), context);
          await runConcurrently(flags.warmup, 1, warmupCreate, context);

          context.log.info({ n, concurrency: flags.concurrency }, 'bare workflows under load');
          const bare = await runConcurrently(n, flags.concurrency, () => baseline.run(), context);
          logRun(context, 'bare workflows', bare);
          context.log.info({ n, concurrency: flags.concurrency }, 'actors under load');
          const actors = await runConcurrently(n, flags.concurrency, create, context);
          logRun(context, 'actors', actors);

          return [
            quantityOf(
              'start-rate.starts-per-second',
              n,
              { value: ratePerSecond(actors), unit: 'starts/s' },
              { name: BASELINE_NAME, value: ratePerSecond(bare) },
            ),
            figureOf('start-rate.latency', BASELINE_NAME, { subject: actors.latencies, baseline: bare.latencies }),
          ];
        } finally {
          await baseline.close();
        }
      },
      env,
    );
  },
};

function ratePerSecond(run: ConcurrentRun): number {
  return run.latencies.length / (run.elapsedMs / 1000);
}

function logRun(context: BenchContext, what: string, run: ConcurrentRun): void {
  context.log.info(
    { count: run.latencies.length, seconds: Math.round(run.elapsedMs) / 1000, perSecond: ratePerSecond(run) },
    `${what}: done`,
  );
}
