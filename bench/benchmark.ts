/**
 * What a benchmark is and the pieces every benchmark shares: its flags, its own local stack,
 * interleaved measurement against a baseline, and the figure it prints. bench/run.ts registers
 * the benchmarks; each lives in one file under bench/.
 */
import { InvalidArgumentError, type Command, type OptionValues } from 'commander';
import { loadConfig } from '../src/config.js';
import { startLocalStack, type LocalStack } from '../dev/local-stack.js';
import type { Logger } from '../src/log.js';

/** One line of a benchmark's output (stdout, JSON): a measured latency and its baseline. */
export interface LatencyFigure {
  bench: string;
  n: number;
  median_ms: number;
  p99_ms: number;
  /** What the figure is judged against, measured in the same run on the same servers. */
  baseline: string;
  baseline_median_ms: number;
  /** median_ms / baseline_median_ms. */
  ratio: number;
}

/** A figure that is a quantity (writes per minute, bytes), not a latency: `value` and `unit` instead. */
export interface QuantityFigure {
  bench: string;
  n: number;
  value: number;
  unit: string;
  baseline: string;
  baseline_value: number;
  /** value / baseline_value. */
  ratio: number;
}

export type Figure = LatencyFigure | QuantityFigure;

export interface BenchContext {
  /** Progress and diagnostics, on stderr. */
  log: Logger;
  /** Aborted on Ctrl-C: stop at the next step, stop the stack, give up. */
  signal: AbortSignal;
}

/**
 * A benchmark. `Flags` is what `declareFlags` declares; commander parses and defaults them, so
 * `run` receives exactly that shape.
 */
export interface Benchmark<Flags extends OptionValues = OptionValues> {
  name: string;
  /** One line, shown in the list of benchmarks. */
  description: string;
  declareFlags(command: Command): void;
  run(flags: Flags, context: BenchContext): Promise<Figure[]>;
}

export interface SampleFlags extends OptionValues {
  n: number;
  warmup: number;
}

export interface StackFlags extends OptionValues {
  workers: number;
  runners: number;
  /** Gateway processes sharing one NATS (default 1: no NATS); set by a benchmark, not a flag. */
  gateways?: number;
}

/** --n and --warmup: how many iterations are measured, and how many run before, uncounted. */
export function declareSampleFlags(command: Command, defaults: { n: number; warmup: number }): void {
  command
    .option('--n <count>', 'measured iterations', positiveInt, defaults.n)
    .option('--warmup <count>', 'iterations run first and not counted', nonNegativeInt, defaults.warmup);
}

/** --workers and --runners: the size of the benchmark's own stack. */
export function declareStackFlags(command: Command, defaults: { workers: number; runners: number }): void {
  command
    .option('--workers <count>', 'Dormouse worker processes', positiveInt, defaults.workers)
    .option('--runners <count>', 'runner processes (examples/runner.ts)', positiveInt, defaults.runners);
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number of at least 1');
  return n;
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number of at least 0');
  return n;
}

/**
 * Runs `body` on a stack of its own: ephemeral (a temporary directory, free ports, a headless
 * Temporal server) and quiet (children log only to files, whose folder is named on stderr).
 */
export async function withBenchStack<T>(
  flags: StackFlags,
  context: BenchContext,
  body: (stack: LocalStack) => Promise<T>,
  /** Added to every child's environment (e.g. runner capacity); a benchmark documents what it sets. */
  env: Record<string, string> = {},
): Promise<T> {
  const { log, signal } = context;
  const gateways = flags.gateways ?? 1;
  log.info({ workers: flags.workers, gateways, runners: flags.runners, env }, 'starting the stack');
  const stack = await startLocalStack({
    config: loadConfig(),
    log,
    ports: 'free',
    temporalUi: false,
    workers: flags.workers,
    gateways,
    runners: flags.runners,
    env,
    signal,
  });
  log.info(
    { gateways: stack.gatewayUrls, nats: stack.natsUrl, temporal: stack.temporalAddress, logs: stack.logDir },
    'stack ready',
  );
  let result: T;
  try {
    result = await body(stack);
  } catch (err) {
    // The benchmark's failure is the one to report; the stack logs its own stop failures.
    await stack.stop().catch(() => undefined);
    log.info({ logs: stack.logDir }, 'the logs of the stack are kept');
    throw err;
  }
  await stack.stop();
  return result;
}

/**
 * One iteration of something timed; `i` counts from 0 over warm-up and measured iterations. An
 * iteration with untimed preparation times its own section and returns that duration (ms).
 */
export type Iteration = (i: number, signal: AbortSignal) => Promise<number | void>;

export interface Samples {
  subject: number[];
  baseline: number[];
}

/**
 * Times `subject` and `baseline` alternately, one of each per iteration, so that drift (a server
 * warming up, a neighbour's load) hits both equally; which goes first alternates too, so neither
 * always runs in the other's wake. Sequential: one operation in flight at a time.
 */
export async function measureInterleaved(
  subject: Iteration,
  baseline: Iteration,
  flags: SampleFlags,
  context: BenchContext,
): Promise<Samples> {
  const samples: Samples = { subject: [], baseline: [] };
  const total = flags.warmup + flags.n;
  for (let i = 0; i < total; i++) {
    context.signal.throwIfAborted();
    const order = i % 2 === 0 ? (['subject', 'baseline'] as const) : (['baseline', 'subject'] as const);
    for (const which of order) {
      const elapsed = await timed(() => (which === 'subject' ? subject : baseline)(i, context.signal));
      if (i >= flags.warmup) samples[which].push(elapsed);
    }
    if ((i + 1) % 10 === 0 || i + 1 === total)
      context.log.info({ done: i + 1, of: total, warmup: flags.warmup }, 'iterations');
  }
  // The figure carries the subject's p99 only; the baseline's belongs in the diagnostics.
  context.log.info({ subject: spread(samples.subject), baseline: spread(samples.baseline) }, 'measured');
  return samples;
}

async function timed(fn: () => Promise<number | void>): Promise<number> {
  const start = performance.now();
  const own = await fn();
  return typeof own === 'number' ? own : performance.now() - start;
}

/** How often a long `runConcurrently` says how far it is. */
const PROGRESS_INTERVAL_MS = 10_000;

/** What `runConcurrently` measured: each operation's duration, and the whole run's. */
export interface ConcurrentRun {
  latencies: number[];
  /** From the first operation's start to the last one's end. */
  elapsedMs: number;
}

/**
 * Runs operations 0 … count-1 with `concurrency` of them in flight at all times (a new one starts
 * as one ends), timing each. The first failure stops the starts; it rejects once those in flight
 * have settled, so that nothing of this run spills into the next measurement.
 */
export async function runConcurrently(
  count: number,
  concurrency: number,
  operation: (i: number, signal: AbortSignal) => Promise<void>,
  context: BenchContext,
): Promise<ConcurrentRun> {
  const latencies: number[] = [];
  let lastProgress = performance.now();
  let next = 0;
  let failure: { err: unknown } | undefined;
  const lane = async (): Promise<void> => {
    while (next < count && failure === undefined && !context.signal.aborted) {
      const i = next++;
      const start = performance.now();
      try {
        await operation(i, context.signal);
      } catch (err) {
        failure ??= { err };
        return;
      }
      const end = performance.now();
      latencies.push(end - start);
      if (end - lastProgress >= PROGRESS_INTERVAL_MS) {
        lastProgress = end;
        context.log.info({ done: latencies.length, of: count }, 'operations');
      }
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  const elapsedMs = performance.now() - start;
  context.signal.throwIfAborted();
  if (failure) throw failure.err;
  return { latencies, elapsedMs };
}

/** A quantity figure, rounded like the latencies: values to a tenth, the ratio to a hundredth. */
export function quantityOf(
  bench: string,
  n: number,
  value: { value: number; unit: string },
  baseline: { name: string; value: number },
): QuantityFigure {
  return {
    bench,
    n,
    value: round(value.value, 1),
    unit: value.unit,
    baseline: baseline.name,
    baseline_value: round(baseline.value, 1),
    ratio: baseline.value === 0 ? Number.NaN : round(value.value / baseline.value, 2),
  };
}

/** The figure of `bench` from its samples: the median and p99 of each. */
export function figureOf(bench: string, baselineName: string, samples: Samples): LatencyFigure {
  const subjectMedian = median(samples.subject);
  const baselineMedian = median(samples.baseline);
  return {
    bench,
    n: samples.subject.length,
    median_ms: round(subjectMedian, 1),
    p99_ms: round(nearestRank(samples.subject, 99), 1),
    baseline: baselineName,
    baseline_median_ms: round(baselineMedian, 1),
    ratio: round(subjectMedian / baselineMedian, 2),
  };
}

function spread(samples: readonly number[]): { median_ms: number; p99_ms: number } {
  return { median_ms: round(median(samples), 1), p99_ms: round(nearestRank(samples, 99), 1) };
}

function median(samples: readonly number[]): number {
  const sorted = sortedCopy(samples);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The smallest sample with at least p% of the samples at or below it: p99 of 100 is the 2nd largest. */
function nearestRank(samples: readonly number[], p: number): number {
  const sorted = sortedCopy(samples);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function sortedCopy(samples: readonly number[]): number[] {
  if (samples.length === 0) throw new Error('no samples');
  return [...samples].sort((a, b) => a - b);
}

/** Times to a tenth of a millisecond, ratios to a hundredth: finer digits are noise. */
function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
