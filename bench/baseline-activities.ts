/** The baseline workflow's activity (bench/baseline-workflow.ts). */

/** Does nothing: what remains is Temporal's own cost of scheduling, running and completing an activity. */
async function noop(): Promise<void> {}

export const baselineActivities = { noop };
export type BaselineActivities = typeof baselineActivities;
