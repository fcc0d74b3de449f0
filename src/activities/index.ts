/** All activities, bound to their dependencies. The workflows import only the type. */
import type { ActivityDeps } from './deps.js';
import { reaperActivities } from './reaper.js';
import { startActivities } from './start.js';
import { stateActivities } from './state.js';

export type { ActivityDeps, Faults } from './deps.js';

export function createActivities(deps: ActivityDeps) {
  return { ...startActivities(deps), ...stateActivities(deps), ...reaperActivities(deps) };
}

export type Activities = ReturnType<typeof createActivities>;
