/**
 * The baseline's worker process (bench/baseline.ts starts it): the baseline workflow and its
 * no-op activity on the task queue DORMOUSE_TASK_QUEUE, from the prebuilt bundle named by
 * DORMOUSE_WORKFLOW_BUNDLE, with the Temporal SDK's defaults, like the Dormouse workers
 * (src/worker.ts). Logs `ready` once it polls.
 */
import { NativeConnection, Worker } from '@temporalio/worker';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { installSdkRuntime } from '../src/worker.js';
import { baselineActivities } from './baseline-activities.js';

const config = loadConfig();
const log = createLogger('baseline-worker', config.logLevel);
installSdkRuntime(log);
if (!config.worker.workflowBundle) throw new Error('DORMOUSE_WORKFLOW_BUNDLE must name the baseline bundle');

const connection = await NativeConnection.connect({ address: config.temporal.address });
const worker = await Worker.create({
  connection,
  namespace: config.temporal.namespace,
  taskQueue: config.temporal.taskQueue,
  workflowBundle: { codePath: config.worker.workflowBundle },
  activities: baselineActivities,
  shutdownGraceTime: config.worker.shutdownGraceMs,
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log.info({ signal }, 'shutting down');
    if (worker.getState() === 'RUNNING') worker.shutdown();
  });
}
const done = worker.run();
log.info({ taskQueue: config.temporal.taskQueue, namespace: config.temporal.namespace }, 'ready');
await done;
await connection.close();
log.info('stopped');
