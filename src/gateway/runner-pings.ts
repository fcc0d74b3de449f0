/**
 * Runner pings, batched: every runner pings every few seconds, and the gateway writes all the
 * pings it received since the last tick in one UPDATE, not one per ping. A ping that matched no
 * row came over a connection the registry no longer knows (a newer connection replaced it, or the
 * runner was declared lost while its socket stayed open): that connection is closed, so the
 * runner says hello again and is fenced and admitted afresh, instead of staying connected but
 * never allocated.
 */
import type { Db } from '../db/pool.js';
import { touchRunners, type RunnerEpoch } from '../db/runners.js';
import type { Logger } from '../log.js';
import { RunnerCloseCode } from '../protocol/runner-protocol.js';

/** A runner connection as its pings see it. */
export interface PingingRunner extends RunnerEpoch {
  readonly isClosed: boolean;
  close(code: number, reason: string): void;
}

export class RunnerPings {
  private pinged = new Map<string, PingingRunner>();
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

  touch(runner: PingingRunner): void {
    this.pinged.set(runner.runnerId, runner);
  }

  async flush(): Promise<void> {
    if (this.pinged.size === 0) return;
    const runners = [...this.pinged.values()];
    this.pinged = new Map();
    let matched: Set<string>;
    try {
      matched = await touchRunners(this.db, this.gatewayId, runners);
      this.log.debug({ runners: runners.length }, 'runner pings flushed');
    } catch (err) {
      this.log.error({ err }, 'flushing runner pings failed');
      return;
    }
    for (const runner of runners) {
      if (matched.has(runner.runnerId) || runner.isClosed) continue;
      this.log.warn(
        { runnerId: runner.runnerId, epoch: runner.epoch },
        'runner ping matched no registered connection; closing it so that it says hello again',
      );
      runner.close(RunnerCloseCode.NotRegistered, 'this connection is no longer registered; say hello again');
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
