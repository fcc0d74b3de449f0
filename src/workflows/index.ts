/** The workflows the worker registers (and the bundle holds). */
export { actorWorkflow } from './actor.js';
export { reaperWorkflow } from './reaper.js';
