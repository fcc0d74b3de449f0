/** Activities that mirror the actor workflow's state into the registry. */
import { recordActorState as recordInDb, destroyActor as destroyInDb, type StateChange } from '../db/actors.js';
import type { ActivityDeps } from './deps.js';

export function stateActivities({ db, log, faults }: ActivityDeps) {
  return {
    async recordActorState(change: StateChange): Promise<void> {
      await faults?.beforeRecordActorState?.(change);
      await recordInDb(db, change);
      log.info({ actorId: change.actorId, generation: change.generation, state: change.state }, 'actor state recorded');
    },

    /** Final: frees the key and the runner slot, deletes KV and hibernating requests. */
    async destroyActor(input: { actorId: string; lastError: string | null }): Promise<void> {
      await destroyInDb(db, input.actorId, input.lastError);
      log.info({ actorId: input.actorId }, 'actor destroyed');
    },
  };
}
