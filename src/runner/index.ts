/** The runner SDK: define actor types and host them in a runner process. */
export { defineActor } from './define-actor.js';
export type { ActorContext, ActorDefinition, ActorKv, AnyActorDefinition } from './define-actor.js';
export { createRunner } from './runner.js';
export type { Runner, RunnerOptions } from './runner.js';
export { FencedError } from './kv-client.js';
export type { Connection, ConnectionRequest } from './define-actor.js';
export type { RunnerFaults } from './actor-instance.js';
