/**
 * The benchmarks' baseline: a bare workflow with the shape of an actor start (DESIGN §1:
 * allocateActor, listHibernatingRequests, insertAndSendCommands, three activities in a row)
 * and none of its work. What Dormouse adds on top of this is what a benchmark's ratio shows.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { BaselineActivities } from './baseline-activities.js';

// The actor workflow's activity timeout, so that both run under the same rules.
const { noop } = proxyActivities<BaselineActivities>({ startToCloseTimeout: '30 seconds' });

export async function baselineWorkflow(): Promise<void> {
  await noop();
  await noop();
  await noop();
}
