/**
 * The maintenance singleton `dormouse/reaper`. Each tick it declares lost the runners whose
 * ping is too old and signals their actors, sweeps hibernating requests of dead gateways, forgets
 * runners lost long ago, trims old commands and repairs actors whose workflow never started. Liveness is decided
 * here, from the database clock, never by a timer per actor.
 */
import * as wf from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { NON_RETRYABLE_ERROR_TYPES } from '../errors.js';

export const REAPER_WORKFLOW_ID = 'dormouse/reaper';

export interface ReaperInput {
  intervalMs: number;
}

// As the actor workflow's (actor.ts): a tick that meets a contradiction fails the run loudly
// rather than repeating it every 10 s; the worker starts the reaper again when it restarts.
const { reap } = wf.proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: {
    initialInterval: '1 second',
    maximumInterval: '10 seconds',
    nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES,
  },
});

export async function reaperWorkflow(input: ReaperInput): Promise<void> {
  for (;;) {
    const report = await reap();
    wf.setCurrentDetails(
      `last tick: ${report.lostRunners} runners lost · ${report.signaledActors} actors signaled · ` +
        `${report.sweptRequests} requests swept · ${report.forgottenRunners} runners forgotten · ` +
        `${report.trimmedCommands} commands trimmed · ` +
        `${report.restartedOrphans} orphans restarted`,
    );
    if (wf.workflowInfo().continueAsNewSuggested) {
      await wf.continueAsNew<typeof reaperWorkflow>(input);
    }
    await wf.sleep(input.intervalMs, { summary: 'next tick' });
  }
}
