/**
 * The baseline a benchmark is judged against: the bare workflow of bench/baseline-workflow.ts,
 * timed from the client's start call to its result, on the benchmark's own Temporal server.
 *
 * Its worker runs as a child process, not in the bench process: so does every Dormouse worker,
 * and the bench process, which keeps the clocks, then does the same for both sides (send a
 * request, wait for the answer) instead of also running the baseline's activities and workflow
 * tasks on its own event loop. The workflow bundle is built once, before that worker starts.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import type { LocalStack } from '../dev/local-stack.js';
import { writeWorkflowBundle } from '../src/workflow-bundle.js';
import type { baselineWorkflow } from './baseline-workflow.js';

export const BASELINE_NAME = 'temporal-workflow-3-noop-activities';

const WORKFLOWS_PATH = fileURLToPath(new URL('./baseline-workflow.ts', import.meta.url));
const WORKER_SCRIPT = fileURLToPath(new URL('./baseline-worker.ts', import.meta.url));
/** Its own task queue: the Dormouse workers never see these workflows. */
const TASK_QUEUE = 'dormouse-bench-baseline';
/**
 * Bounds one iteration: the server fails the workflow, and so result(), when it passes. Runs of
 * thousands in flight pass a longer one: there a workflow waits its turn on a loaded server.
 */
const EXECUTION_TIMEOUT = '30 seconds';

export interface Baseline {
  /** One workflow, from start to result. */
  run(): Promise<void>;
  /** Closes the client; the worker process stops with the stack. */
  close(): Promise<void>;
}

export async function startBaseline(
  stack: LocalStack,
  { executionTimeout = EXECUTION_TIMEOUT }: { executionTimeout?: string } = {},
): Promise<Baseline> {
  const bundle = await writeWorkflowBundle(join(stack.stateDir, 'baseline-workflow-bundle.js'), WORKFLOWS_PATH);
  await stack.startProcess({
    name: 'baseline-worker',
    script: WORKER_SCRIPT,
    env: { DORMOUSE_TASK_QUEUE: TASK_QUEUE, DORMOUSE_WORKFLOW_BUNDLE: bundle },
  });
  const connection = await Connection.connect({ address: stack.temporalAddress });
  const client = new Client({ connection, namespace: stack.namespace });
  const runId = randomBytes(4).toString('hex');
  let count = 0;
  return {
    async run() {
      const handle = await client.workflow.start<typeof baselineWorkflow>('baselineWorkflow', {
        taskQueue: TASK_QUEUE,
        workflowId: `bench-baseline-${runId}-${count++}`,
        workflowExecutionTimeout: executionTimeout,
      });
      await handle.result();
    },
    close: () => connection.close(),
  };
}
