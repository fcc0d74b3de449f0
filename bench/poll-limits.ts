/**
 * `poll-limits`: DESIGN §2.2, measured. The history service reads each task queue of a shard at
 * most `…MaxPollRPS` times a second (default 20); every Temporal server the project starts gets
 * QUEUE_POLL_LIMITS instead (dev/temporal-server.ts). This times the baseline workflow (three
 * no-op activities, bench/baseline-workflow.ts) from start to result on two dev servers side by
 * side, one with the server's defaults and one with those limits, alternating one workflow on each.
 * Its worker runs in this process and polls both servers alike.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import type { Command } from 'commander';
import { resolveTemporalCli } from '../dev/temporal-cli.js';
import { QUEUE_POLL_LIMITS, startTemporalDevServer, type TemporalDevServer } from '../dev/temporal-server.js';
import { writeWorkflowBundle } from '../src/workflow-bundle.js';
import { installSdkRuntime } from '../src/worker.js';
import { baselineActivities } from './baseline-activities.js';
import { BASELINE_NAME } from './baseline.js';
import type { baselineWorkflow } from './baseline-workflow.js';
import { declareSampleFlags, figureOf, measureInterleaved, type Benchmark, type SampleFlags } from './benchmark.js';

const WORKFLOWS_PATH = fileURLToPath(new URL('./baseline-workflow.ts', import.meta.url));
const TASK_QUEUE = 'dormouse-bench-poll-limits';
/** The history service's own default for every key of QUEUE_POLL_LIMITS. */
const SERVER_DEFAULT_RPS = 20;

/** One server with its client and a worker polling it. */
interface Side {
  server: TemporalDevServer;
  run(): Promise<void>;
  stop(): Promise<void>;
}

export const pollLimits: Benchmark<SampleFlags> = {
  name: 'poll-limits',
  description: "the baseline workflow on a Temporal server with QUEUE_POLL_LIMITS, vs the server's defaults",
  declareFlags(command: Command) {
    declareSampleFlags(command, { n: 100, warmup: 10 });
  },
  async run(flags, context) {
    installSdkRuntime(context.log); // the SDK's own lines go to stderr with the rest of the progress
    const dir = await mkdtemp(join(tmpdir(), 'dormouse-poll-limits-'));
    const sides: Side[] = [];
    try {
      const bundle = await writeWorkflowBundle(join(dir, 'baseline-workflow-bundle.js'), WORKFLOWS_PATH);
      const defaults = Object.fromEntries(Object.keys(QUEUE_POLL_LIMITS).map((key) => [key, SERVER_DEFAULT_RPS]));
      const throttled = await startSide(defaults, bundle);
      sides.push(throttled);
      const raised = await startSide({}, bundle);
      sides.push(raised);
      context.log.info({ limits: QUEUE_POLL_LIMITS }, 'two servers ready');
      const samples = await measureInterleaved(
        () => raised.run(),
        () => throttled.run(),
        flags,
        context,
      );
      return [figureOf(`poll-limits/${BASELINE_NAME}`, `${BASELINE_NAME} at ${SERVER_DEFAULT_RPS} polls/s`, samples)];
    } finally {
      for (const side of sides) await side.stop();
      await rm(dir, { recursive: true, force: true });
    }
  },
};

/** A headless dev server (QUEUE_POLL_LIMITS overridden by `dynamicConfig`), a client and a worker on it. */
async function startSide(dynamicConfig: Record<string, number>, bundle: string): Promise<Side> {
  const cliPath = await resolveTemporalCli({ install: false });
  const server = await startTemporalDevServer({ cliPath, uiPort: null, dynamicConfig });
  const native = await NativeConnection.connect({ address: server.address });
  const worker = await Worker.create({
    connection: native,
    taskQueue: TASK_QUEUE,
    workflowBundle: { codePath: bundle },
    activities: baselineActivities,
  });
  const running = worker.run();
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const runId = randomBytes(4).toString('hex');
  let count = 0;
  return {
    server,
    run: () =>
      client.workflow.execute<typeof baselineWorkflow>('baselineWorkflow', {
        taskQueue: TASK_QUEUE,
        workflowId: `poll-limits-${runId}-${count++}`,
        workflowExecutionTimeout: '30 seconds',
      }),
    async stop() {
      worker.shutdown();
      await running;
      await connection.close();
      await native.close();
      await server.stop();
    },
  };
}
