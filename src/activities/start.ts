/**
 * The three activities of an actor start (DESIGN §1). `insertAndSendCommands` writes exactly its
 * input and nothing else: it reads no table and makes no choice, so a retry writes
 * byte-for-byte what the first attempt would have.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { allocateActor as allocateInDb, type Allocation } from '../db/actors.js';
import { insertCommands } from '../db/commands.js';
import { listLiveHibernatingRequests } from '../db/hibernating-requests.js';
import type { CommandEnvelope, HibernatingRequestRef } from '../protocol/runner-protocol.js';
import type { ActivityDeps } from './deps.js';

export interface AllocateInput {
  actorId: string;
  generation: number;
}

/** What a start reads before it queues the StartActor: its runner and its snapshot. */
export interface StartReads {
  allocation: Allocation;
  hibernatingRequests: HibernatingRequestRef[];
}

export interface InsertAndSendInput {
  runnerId: string;
  commands: CommandEnvelope[];
}

export function startActivities({ db, config, log, faults }: ActivityDeps) {
  const activities = {
    /**
     * Picks a runner with free capacity and bumps the generation; retried while there is none.
     * An actor destroyed meanwhile gets no runner: the workflow then finishes its destroy. A
     * registry that contradicts the workflow fails it for good (InvariantViolation, src/errors.ts).
     */
    async allocateActor(input: AllocateInput): Promise<Allocation> {
      const allocation = await allocateInDb(db, { ...input, runnerLostMs: config.timing.runnerLostMs });
      if (!allocation) {
        throw ApplicationFailure.retryable(`no live runner with free capacity hosts this actor`, 'NoCapacity');
      }
      if ('destroyed' in allocation) {
        log.info({ actorId: input.actorId, generation: input.generation }, 'allocation refused: actor destroyed');
        return allocation;
      }
      log.info(
        { actorId: input.actorId, generation: input.generation, runnerId: allocation.runnerId },
        'actor allocated',
      );
      return allocation;
    },

    /** The snapshot: read once per start, recorded in the history as this activity's result. */
    async listHibernatingRequests(input: { actorId: string }): Promise<HibernatingRequestRef[]> {
      const requests = await listLiveHibernatingRequests(db, input.actorId, config.timing.hibernationThresholdMs);
      log.debug({ actorId: input.actorId, count: requests.length }, 'hibernating requests listed');
      return requests;
    },

    /**
     * Both reads of a start side by side, as one local activity: the workflow takes both results
     * in one activation. A destroyed actor's snapshot is read all the same, and not used.
     */
    async allocateAndSnapshot(input: AllocateInput): Promise<StartReads> {
      const [allocation, hibernatingRequests] = await Promise.all([
        activities.allocateActor(input),
        activities.listHibernatingRequests({ actorId: input.actorId }),
      ]);
      return { allocation, hibernatingRequests };
    },

    async insertAndSendCommands(input: InsertAndSendInput): Promise<void> {
      await faults?.beforeInsertAndSendCommands?.({ attempt: Context.current().info.attempt, input });
      const inserted = await insertCommands(db, input.runnerId, input.commands);
      log.debug({ runnerId: input.runnerId, commands: input.commands.length, inserted }, 'commands queued');
    },
  };
  return activities;
}
