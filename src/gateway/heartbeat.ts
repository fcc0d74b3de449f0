/**
 * The gateway heartbeat (DESIGN §3, H2): one UPDATE per gateway every T/2 keeps all of its
 * hibernating requests live, however many there are. A gateway that cannot heartbeat for longer
 * than T has been declared dead by everyone else (its requests leave every snapshot), so it
 * stops claiming its hibernatable sockets, closing them with 1012 so their clients reconnect,
 * and registers afresh once it can.
 */
import type { Timing } from '../config.js';
import { heartbeatGateway, registerGateway } from '../db/gateways.js';
import type { Db } from '../db/pool.js';
import type { Logger } from '../log.js';

export class GatewayHeartbeat {
  private lapsed = false;
  private readonly beatTimer: NodeJS.Timeout;
  private lapseTimer: NodeJS.Timeout;

  constructor(
    private readonly db: Db,
    private readonly gatewayId: string,
    private readonly address: string,
    private readonly timing: Timing,
    private readonly log: Logger,
    private readonly abandonSockets: () => void,
  ) {
    this.beatTimer = setInterval(() => void this.beat(), timing.gatewayHeartbeatMs);
    this.beatTimer.unref();
    this.lapseTimer = this.armLapse();
  }

  stop(): void {
    clearInterval(this.beatTimer);
    clearTimeout(this.lapseTimer);
  }

  /** Fires T after the last successful beat, unless another one succeeds first. */
  private armLapse(): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.lapsed = true;
      this.log.warn('no successful heartbeat for T; closing hibernatable sockets');
      this.abandonSockets();
    }, this.timing.hibernationThresholdMs);
    timer.unref();
    return timer;
  }

  private async beat(): Promise<void> {
    try {
      if (this.lapsed) {
        // Our old rows may be half-swept: start clean, as a restarted gateway does.
        await registerGateway(this.db, this.gatewayId, this.address);
        this.lapsed = false;
        this.log.info('gateway registered again after its heartbeat lapsed');
      } else {
        await heartbeatGateway(this.db, this.gatewayId);
      }
      clearTimeout(this.lapseTimer);
      this.lapseTimer = this.armLapse();
      this.log.debug('gateway heartbeat');
    } catch (err) {
      this.log.error({ err }, 'gateway heartbeat failed');
    }
  }
}
