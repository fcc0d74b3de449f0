/**
 * `npm run bench -- <name> [flags]`: runs one benchmark on a stack of its own and prints one JSON
 * line per figure on stdout (bench/benchmark.ts: Figure); progress goes to stderr. Exit codes:
 * 0 done, 1 failed, 2 bad usage, 130 interrupted.
 *
 * A benchmark is a file under bench/ exporting a Benchmark, listed in BENCHMARKS below.
 */
import { Command, CommanderError, type OptionValues } from 'commander';
import { loadConfig } from '../src/config.js';
import { prettyLogger } from '../dev/pretty-log.js';
import { onShutdownSignal } from '../dev/shutdown-signal.js';
import { errorMessage } from '../src/errors.js';
import type { Benchmark, Figure } from './benchmark.js';
import { coldStart } from './cold-start.js';
import { crossGateway } from './cross-gateway.js';
import { fanout } from './fanout.js';
import { gatewaySockets } from './gateway-sockets.js';
import { hibernatingSockets } from './hibernating-sockets.js';
import { phases } from './phases.js';
import { pollLimits } from './poll-limits.js';
import { restingMemory } from './resting-memory.js';
import { sleepingActors } from './sleeping-actors.js';
import { startRate } from './start-rate.js';
import { wake } from './wake.js';
import { wakeInPlace } from './wake-in-place.js';

const BENCHMARKS: ReadonlyMap<string, Benchmark> = new Map(
  [
    coldStart,
    wake,
    wakeInPlace,
    restingMemory,
    hibernatingSockets,
    startRate,
    sleepingActors,
    phases,
    pollLimits,
    fanout,
    crossGateway,
    gatewaySockets,
    (await import('./workerd-baseline.js')).workerdBaseline,
  ].map((bench) => [bench.name, bench]),
);

const USAGE_ERROR = 2;
const INTERRUPTED = 130;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h') {
    process.stdout.write(usage());
    return 0;
  }
  const bench = name === undefined ? undefined : BENCHMARKS.get(name);
  if (!bench) {
    process.stderr.write(`${name === undefined ? 'No benchmark named.' : `Unknown benchmark "${name}".`}\n${usage()}`);
    return USAGE_ERROR;
  }
  const flags = parseFlags(bench, rest);
  if (typeof flags === 'number') return flags;

  const log = prettyLogger(loadConfig().logLevel, 2);
  const signal = onShutdownSignal(log);
  try {
    const figures = await bench.run(flags, { log, signal });
    for (const figure of figures) printFigure(figure);
    return 0;
  } catch (err) {
    if (signal.aborted) return INTERRUPTED;
    log.error(errorMessage(err));
    return 1;
  }
}

function usage(): string {
  const width = Math.max(...[...BENCHMARKS.keys()].map((name) => name.length));
  const list = [...BENCHMARKS.values()].map((b) => `  ${b.name.padEnd(width)}  ${b.description}`).join('\n');
  return `Usage: npm run bench -- <name> [flags]\n\nBenchmarks:\n${list}\n\n\`npm run bench -- <name> --help\` lists its flags.\n`;
}

/** The benchmark's flags, or the exit code when they are wrong or help was asked for. */
function parseFlags(bench: Benchmark, args: string[]): OptionValues | number {
  const command = new Command(bench.name).description(bench.description).exitOverride();
  bench.declareFlags(command);
  try {
    command.parse(args, { from: 'user' });
  } catch (err) {
    // Commander has printed the problem (or the help); only the exit code is left to choose.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : USAGE_ERROR;
    throw err;
  }
  return command.opts();
}

/** Exactly these keys, in this order: the output is read by scripts. */
function printFigure(figure: Figure): void {
  const line =
    'median_ms' in figure
      ? (({ bench, n, median_ms, p99_ms, baseline, baseline_median_ms, ratio }) => ({
          bench,
          n,
          median_ms,
          p99_ms,
          baseline,
          baseline_median_ms,
          ratio,
        }))(figure)
      : (({ bench, n, value, unit, baseline, baseline_value, ratio }) => ({
          bench,
          n,
          value,
          unit,
          baseline,
          baseline_value,
          ratio,
        }))(figure);
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

process.exitCode = await main(process.argv.slice(2));
// Lingering handles (a stubborn connection) must not keep a finished benchmark alive.
process.exit();
