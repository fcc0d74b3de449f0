/** The runner SDK: define actor types and host them in a runner process. */
export { defineActor } from './define-actor.js';
export type { ActorContext, ActorDefinition, ActorKv, AnyActorDefinition } from './define-actor.js';
export { createRunner } from './runner.js';
export type { Runner, RunnerOptions } from './runner.js';
/** What an actor's KV calls throw once the registry placed its generation elsewhere (DESIGN §3). */
export { Fenced } from '../errors.js';
export type { Connection, ConnectionRequest } from './define-actor.js';
export type { RunnerFaults } from './actor-instance.js';
