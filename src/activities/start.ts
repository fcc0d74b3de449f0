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

export interface InsertAndSendInput {
  runnerId: string;
  commands: CommandEnvelope[];
}

export function startActivities({ db, config, log, faults }: ActivityDeps) {
  return {
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

    async insertAndSendCommands(input: InsertAndSendInput): Promise<void> {
      await faults?.beforeInsertAndSendCommands?.({ attempt: Context.current().info.attempt, input });
      const inserted = await insertCommands(db, input.runnerId, input.commands);
      log.debug({ runnerId: input.runnerId, commands: input.commands.length, inserted }, 'commands queued');
    },
  };
}
