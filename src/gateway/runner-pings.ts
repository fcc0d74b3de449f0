/**
 * Runner pings, batched: every runner pings every few seconds, and the gateway writes all the
 * pings it received since the last tick in one UPDATE, not one per ping.
 */
import type { Db } from '../db/pool.js';
import { touchRunners } from '../db/runners.js';
import type { Logger } from '../log.js';

export class RunnerPings {
  private pinged = new Set<string>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly db: Db,
    private readonly gatewayId: string,
    intervalMs: number,
    private readonly log: Logger,
  ) {
    this.timer = setInterval(() => void this.flush(), intervalMs);
    this.timer.unref();
  }

  touch(runnerId: string): void {
    this.pinged.add(runnerId);
  }

  async flush(): Promise<void> {
    if (this.pinged.size === 0) return;
    const ids = [...this.pinged];
    this.pinged = new Set();
    try {
      await touchRunners(this.db, this.gatewayId, ids);
      this.log.debug({ runners: ids.length }, 'runner pings flushed');
    } catch (err) {
      this.log.error({ err }, 'flushing runner pings failed');
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
