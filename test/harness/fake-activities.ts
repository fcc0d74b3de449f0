/**
 * Fakes of the actor workflow's activities for the workflow unit tests (test/workflows), typed by
 * the real `Activities`: they record what the workflow asked for, per actor, and answer what the
 * test decides. No database, no runner: the workflow's decisions are the subject.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Activities } from '../../src/activities/index.js';
import type { AllocateInput } from '../../src/activities/start.js';
import type { Allocation } from '../../src/db/actors.js';
import { InvariantViolation } from '../../src/errors.js';
import type { HibernatingRequestRef } from '../../src/protocol/runner-protocol.js';

/** Far longer than a fake's attempt takes. */
const ATTEMPT_GRACE_MS = 100;

/** The activities the actor workflow calls (the reaper's `reap` is not one of them). */
export type ActorActivityName = Exclude<keyof Activities, 'reap'>;

/** One activity the workflow scheduled, with its input; retries of it are the same call. */
export type ActivityCall = {
  [N in ActorActivityName]: { name: N; input: Parameters<Activities[N]>[0] };
}[ActorActivityName];

export interface FakeActor {
  /** What `listHibernatingRequests` answers. */
  snapshot: HibernatingRequestRef[];
  /** Without capacity `allocateActor` fails with `NoCapacity`, as the real one does, and is retried. */
  capacity: boolean;
  /** The registry contradicts the workflow: `allocateActor` throws InvariantViolation, as the real one does then. */
  registryBroken: boolean;
  /** The registry row was destroyed (a destroy won the row lock): `allocateActor` answers `{destroyed}`, as the real one does then. */
  destroyed: boolean;
  /** A local attempt of `recordActorState` fails (Postgres away for a moment); the regular one succeeds. */
  localRecordsFail: boolean;
  /** Every attempt of every call, retries included. */
  attempts: ActivityCall['name'][];
  /** The attempts that ran as local activities. */
  localAttempts: ActivityCall['name'][];
  calls: ActivityCall[];
}

/** What the real allocation answers, as the fake actor's world decides. */
function allocate(actor: FakeActor, input: AllocateInput): Allocation {
  if (actor.registryBroken)
    throw new InvariantViolation(`actor ${input.actorId} is ahead of generation ${input.generation}`);
  if (actor.destroyed) return { destroyed: true };
  if (!actor.capacity)
    throw ApplicationFailure.retryable('no live runner with free capacity hosts this actor', 'NoCapacity');
  return { runnerId: runnerOf(input.generation) };
}

/** The runner each generation is placed on: generation 2 on `runner-2`, so commands show their placement. */
export function runnerOf(generation: number): string {
  return `runner-${generation}`;
}

export class FakeActivities {
  private readonly actors = new Map<string, FakeActor>();

  readonly activities: Activities = {
    allocateActor: async (input) => allocate(this.record({ name: 'allocateActor', input }, input.actorId), input),
    listHibernatingRequests: async (input) =>
      this.record({ name: 'listHibernatingRequests', input }, input.actorId).snapshot,
    allocateAndSnapshot: async (input) => {
      const actor = this.record({ name: 'allocateAndSnapshot', input }, input.actorId);
      return { allocation: allocate(actor, input), hibernatingRequests: actor.snapshot };
    },
    insertAndSendCommands: async (input) => {
      const actorId = input.commands[0]?.actorId;
      if (actorId === undefined) throw ApplicationFailure.nonRetryable('insertAndSendCommands without commands');
      this.record({ name: 'insertAndSendCommands', input }, actorId);
    },
    recordActorState: async (input) => {
      const actor = this.record({ name: 'recordActorState', input }, input.actorId);
      if (actor.localRecordsFail && Context.current().info.isLocal)
        throw ApplicationFailure.retryable('the registry is away for a moment', 'Transient');
    },
    destroyActor: async (input) => {
      const actor = this.record({ name: 'destroyActor', input }, input.actorId);
      // An abandoned allocation attempt may still be running: let it end before the workflow
      // does, or the test server stops skipping time for good (see time-skipping.ts).
      if (!actor.capacity) await delay(ATTEMPT_GRACE_MS);
    },
    reap: async () => {
      throw ApplicationFailure.nonRetryable('the reaper does not run in the workflow unit tests');
    },
  };

  /** The fake world of one actor, made on first use (with capacity and no hibernating requests). */
  actor(actorId: string): FakeActor {
    let actor = this.actors.get(actorId);
    if (!actor) {
      actor = {
        snapshot: [],
        capacity: true,
        registryBroken: false,
        destroyed: false,
        localRecordsFail: false,
        attempts: [],
        localAttempts: [],
        calls: [],
      };
      this.actors.set(actorId, actor);
    }
    return actor;
  }

  private record(call: ActivityCall, actorId: string): FakeActor {
    const actor = this.actor(actorId);
    const { attempt, isLocal } = Context.current().info;
    actor.attempts.push(call.name);
    if (isLocal) actor.localAttempts.push(call.name);
    // A retry is the same call; the workflow made it once. (A local attempt and the regular
    // activity that takes over from it are two calls.)
    if (attempt === 1) actor.calls.push(call);
    return actor;
  }
}

/**
 * One line per call, for tables: `allocateAndSnapshot g2`, `allocateActor g2`, `listHibernatingRequests`,
 * `startActor g2 wake @runner-2 hibernating=1`, `stopActor g1 sleep @runner-1`,
 * `recordActorState sleeping g1`, `destroyActor error=boom`.
 */
export function describeCall(call: ActivityCall): string {
  switch (call.name) {
    case 'allocateActor':
      return `allocateActor g${call.input.generation}`;
    case 'listHibernatingRequests':
      return 'listHibernatingRequests';
    case 'allocateAndSnapshot':
      return `allocateAndSnapshot g${call.input.generation}`;
    case 'insertAndSendCommands':
      return call.input.commands
        .map(({ command }) =>
          command.kind === 'startActor'
            ? `startActor g${command.generation} ${command.reason} @${call.input.runnerId} hibernating=${command.hibernatingRequests.length}`
            : `stopActor g${command.generation} ${command.reason} @${call.input.runnerId}`,
        )
        .join(', ');
    case 'recordActorState':
      return `recordActorState ${call.input.state} g${call.input.generation}`;
    case 'destroyActor':
      return call.input.lastError === null ? 'destroyActor' : `destroyActor error=${call.input.lastError}`;
  }
}
