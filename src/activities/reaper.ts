/** The reaper's tick (see workflows/reaper.ts). Every step is idempotent, so a retry is safe. */
import { actorsOnLostRunners, orphanedActors } from '../db/actors.js';
import { deleteExpiredSessions } from '../db/client-sessions.js';
import { trimCommands } from '../db/commands.js';
import { deleteDeadGateways } from '../db/gateways.js';
import { deleteDeadGatewayRequests } from '../db/hibernating-requests.js';
import { deleteLostRunners, markLostRunners } from '../db/runners.js';
import { signalActor, startActorWorkflow } from '../temporal-client.js';
import { runnerLostSignal } from '../workflows/actor-api.js';
import type { ActivityDeps } from './deps.js';

export interface ReapReport {
  lostRunners: number;
  signaledActors: number;
  sweptRequests: number;
  forgottenGateways: number;
  expiredSessions: number;
  forgottenRunners: number;
  trimmedCommands: number;
  restartedOrphans: number;
}

/** An actor row this old at generation 0 has a workflow that never started. */
const ORPHAN_AGE_MS = 60_000;
/** Orphans repaired per tick; they are picked at random, so every one gets its turn. */
const ORPHANS_PER_TICK = 100;
/** Runner-lost signals in flight at once: a runner with thousands of actors must not flood Temporal. */
export const SIGNAL_CONCURRENCY = 16;

export function reaperActivities({ db, client, config, log }: ActivityDeps) {
  return {
    async reap(): Promise<ReapReport> {
      const t = config.timing;
      const lost = await markLostRunners(db, t.runnerLostMs);
      for (const runnerId of lost) log.warn({ runnerId }, 'runner lost');

      // Signal every actor still placed on a lost runner, not only the newly lost: a signal
      // that failed last tick is sent again, and the workflow ignores a repeat.
      const stranded = await actorsOnLostRunners(db);
      await forEachAtMost(SIGNAL_CONCURRENCY, stranded, async ({ actorId, runnerId }) => {
        await signalActor(client, actorId, runnerLostSignal, { runnerId });
      });

      const sweptRequests = await deleteDeadGatewayRequests(db, t.hibernationThresholdMs);
      const forgottenGateways = await deleteDeadGateways(db, t.hibernationThresholdMs);
      const expiredSessions = await deleteExpiredSessions(db, t.sessionRetentionMs, t.hibernationThresholdMs);
      // A lost runner's commands are trimmed after the retention; the runner row goes with them.
      const forgottenRunners = await deleteLostRunners(db, t.commandRetentionMs);
      const trimmedCommands = await trimCommands(db, t.commandRetentionMs);

      // One orphan whose start keeps failing must not stop the others' repair.
      const orphans = await orphanedActors(db, ORPHAN_AGE_MS, ORPHANS_PER_TICK);
      let restartedOrphans = 0;
      for (const actor of orphans) {
        try {
          await startActorWorkflow(client, config, actor);
          restartedOrphans++;
        } catch (err) {
          log.error({ err, actorId: actor.actorId }, 'starting the workflow of an orphaned actor failed');
        }
      }

      const report = {
        lostRunners: lost.length,
        signaledActors: stranded.length,
        sweptRequests,
        forgottenGateways,
        expiredSessions,
        forgottenRunners,
        trimmedCommands,
        restartedOrphans,
      };
      log.debug(report, 'reaper tick');
      return report;
    },
  };
}

/** Runs `fn` on every item with at most `limit` calls in flight; the first failure stops it and is thrown. */
async function forEachAtMost<T>(limit: number, items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const lane = async (): Promise<void> => {
    while (!failed && next < items.length) {
      try {
        await fn(items[next++]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}
