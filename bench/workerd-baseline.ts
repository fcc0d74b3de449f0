/**
 * `workerd-baseline`: Cloudflare's own runtime, measured for the comparisons of issue 11 (the
 * figures `wake-in-place` and `cold-start` are judged against). `workerd` from npm runs the chat
 * room of bench/workerd/ as a Durable Object on the WebSocket Hibernation API (bench/workerd.ts):
 *
 * - `workerd-do-cold-start`: a never-used object's first HTTP reply (`GET /state`);
 * - `workerd-do-wake`: a message to an object evicted from memory with its socket hibernated,
 *   until its broadcast returns (every sample checked to have rebuilt its object);
 *
 * each against the same Worker answering the same request without an object, in the same run.
 * No Dormouse stack is started.
 */
import type { Command } from 'commander';
import { declareSampleFlags, figureOf, type Benchmark, type SampleFlags } from './benchmark.js';
import { measureDoColdStart, measureDoWake, withWorkerd } from './workerd.js';

const BASELINE_NAME = 'workerd-plain-worker';

export const workerdBaseline: Benchmark<SampleFlags> = {
  name: 'workerd-baseline',
  description:
    "workerd's Durable Object (chat room, WebSocket Hibernation API): cold start and wake from hibernation, vs a plain Worker",
  declareFlags(command: Command) {
    declareSampleFlags(command, { n: 200, warmup: 5 });
  },
  run(flags, context) {
    return withWorkerd(context, async (url) => {
      const coldStart = await measureDoColdStart(url, flags.n, { ...context, warmup: flags.warmup });
      const wake = await measureDoWake(url, flags.n, { ...context, warmup: flags.warmup });
      return [
        figureOf('workerd-do-cold-start', BASELINE_NAME, coldStart),
        figureOf('workerd-do-wake', BASELINE_NAME, wake),
      ];
    });
  },
};
