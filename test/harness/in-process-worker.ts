/**
 * A Dormouse worker in the test's own process, on a test stack's database and namespace, for
 * tests that inject faults into activities at exact points (src/activities/deps.ts: Faults). A
 * worker in a child process cannot take a hook; one here can.
 */
import { inject } from 'vitest';
import type { Faults } from '../../src/activities/index.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { installSdkRuntime, startWorker, type RunningWorker } from '../../src/worker.js';
import type { TestStack } from './stack.js';

export function startInProcessWorker(
  stack: TestStack,
  faults: Faults,
  env: Record<string, string> = {},
): Promise<RunningWorker> {
  const config = loadConfig({
    ...env,
    DORMOUSE_LOG_LEVEL: 'warn',
    DATABASE_URL: stack.databaseUrl,
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TEMPORAL_NAMESPACE: stack.namespace,
    DORMOUSE_WORKFLOW_BUNDLE: inject('workflowBundlePath'),
  });
  const log = createLogger('worker', 'warn');
  installSdkRuntime(log);
  return startWorker(config, log, faults);
}
