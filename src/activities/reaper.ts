/** The reaper's tick (see workflows/reaper.ts). Every step is idempotent, so a retry is safe. */
import { actorsOnLostRunners, orphanedActors } from '../db/actors.js';
import { trimCommands } from '../db/commands.js';
import { deleteDeadGateways } from '../db/gateways.js';
import { deleteDeadGatewayRequests } from '../db/hibernating-requests.js';
import { markLostRunners } from '../db/runners.js';
import { signalActor, startActorWorkflow } from '../temporal-client.js';
import { runnerLostSignal } from '../workflows/actor-api.js';
import type { ActivityDeps } from './deps.js';

export interface ReapReport {
  lostRunners: number;
  signaledActors: number;
  sweptRequests: number;
  forgottenGateways: number;
  trimmedCommands: number;
  restartedOrphans: number;
}

/** An actor row this old at generation 0 has a workflow that never started. */
const ORPHAN_AGE_MS = 60_000;

export function reaperActivities({ db, client, config, log }: ActivityDeps) {
  return {
    async reap(): Promise<ReapReport> {
      const t = config.timing;
      const lost = await markLostRunners(db, t.runnerLostMs);
      for (const runnerId of lost) log.warn({ runnerId }, 'runner lost');

      // Signal every actor still placed on a lost runner, not only the newly lost: a signal
      // that failed last tick is sent again, and the workflow ignores a repeat.
      const stranded = await actorsOnLostRunners(db);
      await Promise.all(
        stranded.map(({ actorId, runnerId }) => signalActor(client, actorId, runnerLostSignal, { runnerId })),
      );

      const sweptRequests = await deleteDeadGatewayRequests(db, t.hibernationThresholdMs);
      const forgottenGateways = await deleteDeadGateways(db, t.hibernationThresholdMs);
      const trimmedCommands = await trimCommands(db, t.commandRetentionMs);

      const orphans = await orphanedActors(db, ORPHAN_AGE_MS);
      for (const actor of orphans) await startActorWorkflow(client, config, actor);

      const report = {
        lostRunners: lost.length,
        signaledActors: stranded.length,
        sweptRequests,
        forgottenGateways,
        trimmedCommands,
        restartedOrphans: orphans.length,
      };
      log.debug(report, 'reaper tick');
      return report;
    },
  };
}
