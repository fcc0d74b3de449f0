/**
 * What the benchmarks of many gateways (issue 9: fanout, cross-gateway) share: a `chat` room on a
 * stack of two gateways, and which of the two holds the room's runner.
 */
import type pg from 'pg';
import type { LocalStack } from '../dev/local-stack.js';
import { waitFor } from '../dev/wait.js';
import { createChat, expectJson } from './cold-start.js';

/** Bound on creating a room and reaching it (the gateway gives up on a start after 90 s). */
const OPEN_TIMEOUT_MS = 60_000;

export interface PlacedRoom {
  actorId: string;
  /** The gateway the room's runner is connected to. */
  runnerGateway: string;
  /** The other gateway: frames between it and the room cross NATS. */
  otherGateway: string;
}

/**
 * Creates a `chat` room that stays awake, waits for its first reply (so that it runs on a
 * runner), and reads from the registry which of the stack's two gateways that runner is
 * connected to.
 */
export async function openPlacedRoom(
  stack: LocalStack,
  db: pg.Pool,
  key: string,
  stop: AbortSignal,
): Promise<PlacedRoom> {
  if (stack.gatewayUrls.length !== 2)
    throw new Error(`expected a stack of two gateways, not ${stack.gatewayUrls.length}`);
  const signal = AbortSignal.any([stop, AbortSignal.timeout(OPEN_TIMEOUT_MS)]);
  const actorId = await createChat(stack.gatewayUrl, key, signal);
  await expectJson(await fetch(`${stack.gatewayUrl}/actors/${actorId}/http/state`, { signal }), 200);
  // The first reply does not wait for the registry to record where the room runs.
  const runnerGateway = await waitFor(
    async () =>
      (
        await db.query<{ address: string }>(
          `SELECT g.address FROM actors a
             JOIN runners r ON r.runner_id = a.runner_id
             JOIN gateways g ON g.gateway_id = r.gateway_id
           WHERE a.actor_id = $1`,
          [actorId],
        )
      ).rows[0]?.address,
    { timeoutMs: OPEN_TIMEOUT_MS, intervalMs: 50, message: `room ${actorId} placed on a runner`, signal: stop },
  );
  const otherGateway = stack.gatewayUrls.find((url) => url !== runnerGateway);
  if (!stack.gatewayUrls.includes(runnerGateway) || otherGateway === undefined)
    throw new Error(
      `room ${actorId}: its runner's gateway ${runnerGateway} is not one of ${stack.gatewayUrls.join(', ')}`,
    );
  return { actorId, runnerGateway, otherGateway };
}
