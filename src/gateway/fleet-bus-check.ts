/**
 * Gateways without a bus cannot reach each other's runners (DESIGN §2.1): a gateway started
 * without DORMOUSE_NATS_URL refuses to run beside another live one, and a gateway on the bus
 * refuses to run beside one that is not. "Live" is a registered gateway that answers its
 * health check now: a crashed one's row outlives it by the hibernation threshold.
 */
import { otherLiveGateways } from '../db/gateways.js';
import type { Queryable } from '../db/pool.js';

const HEALTH_TIMEOUT_MS = 1000;

/** Throws with what to do if this gateway may not join the fleet as configured. */
export async function checkFleetBus(
  db: Queryable,
  gatewayId: string,
  onBus: boolean,
  thresholdMs: number,
): Promise<void> {
  for (const other of await otherLiveGateways(db, gatewayId, thresholdMs)) {
    const health = await healthOf(other.address);
    if (!health || health.gatewayId !== other.gatewayId) continue; // gone, or another gateway reuses the address
    if (!onBus)
      throw new Error(
        `gateway ${other.gatewayId} is running at ${other.address}: several gateways need a NATS bus; set DORMOUSE_NATS_URL on every gateway`,
      );
    if (health.bus !== 'nats')
      throw new Error(
        `gateway ${other.gatewayId} at ${other.address} runs without DORMOUSE_NATS_URL: restart it on the bus before adding gateways`,
      );
  }
}

async function healthOf(address: string): Promise<{ gatewayId?: string; bus?: string } | null> {
  try {
    const response = await fetch(new URL('/healthz', address), { signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS) });
    return response.ok ? ((await response.json()) as { gatewayId?: string; bus?: string }) : null;
  } catch {
    return null;
  }
}
