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
  /** When the beat the lapse timer counts from began (Node clock, only ever compared with itself). */
  private armedFrom: number;

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
    // The gateway registered (a beat) just before it built this.
    this.armedFrom = Date.now();
    this.lapseTimer = this.armLapse();
  }

  stop(): void {
    clearInterval(this.beatTimer);
    clearTimeout(this.lapseTimer);
  }

  /**
   * Fires T after the last successful beat *began*, unless another one succeeds first. The row's
   * `last_ping_at` is the database's clock at some point during the beat, never before it began:
   * counting from the beat's end would let a slow beat stretch the lapse past T (H2).
   */
  private armLapse(): NodeJS.Timeout {
    const timer = setTimeout(
      () => {
        this.lapsed = true;
        this.log.warn('no successful heartbeat for T; closing hibernatable sockets');
        this.abandonSockets();
      },
      Math.max(0, this.armedFrom + this.timing.hibernationThresholdMs - Date.now()),
    );
    timer.unref();
    return timer;
  }

  private async beat(): Promise<void> {
    const beganAt = Date.now();
    try {
      if (this.lapsed) {
        // Our old rows may be half-swept: start clean, as a restarted gateway does.
        await registerGateway(this.db, this.gatewayId, this.address);
        this.lapsed = false;
        this.log.info('gateway registered again after its heartbeat lapsed');
      } else {
        await heartbeatGateway(this.db, this.gatewayId);
      }
      // A slow beat that ends after a later one must not pull the lapse earlier.
      if (beganAt > this.armedFrom) {
        this.armedFrom = beganAt;
        clearTimeout(this.lapseTimer);
        this.lapseTimer = this.armLapse();
      }
      this.log.debug('gateway heartbeat');
    } catch (err) {
      this.log.error({ err }, 'gateway heartbeat failed');
    }
  }
}
