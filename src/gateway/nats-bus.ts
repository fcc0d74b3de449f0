/**
 * The gateway bus over NATS (DESIGN §2.1): core subjects, no streams. Each gateway listens on
 * its own subject (frames addressed to it), on its HTTP subject (requests it answers), and on
 * the subject of all gateways. What a gateway publishes never comes back to itself (`noEcho`).
 *
 * Core NATS delivers at most once: a message published while a gateway is cut off is lost. The
 * protocol above it does not rely on the bus for durability (the client's pending messages and
 * the actor's outbox are kept until acknowledged); after a loss the tunnel re-synchronises.
 */
import {
  connect,
  RequestError,
  TimeoutError,
  type Msg,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import type { Logger } from '../log.js';
import {
  busHttpReply,
  busHttpRequest,
  busMessage,
  parseBus,
  type BusHttpReply,
  type BusHttpRequest,
  type BusMessage,
} from '../protocol/gateway-bus.js';

/** What the tunnel does with what arrives. */
export interface BusHandlers {
  /** `direct`: sent to this gateway alone (else to all gateways). */
  onMessage(message: BusMessage, direct: boolean): void;
  onHttpRequest(request: BusHttpRequest): Promise<BusHttpReply>;
  /** After an outage or a slow-consumer drop: messages to this gateway may have been lost. */
  onMessagesLost(): void;
}

const PREFIX = 'dormouse.gw';
const ALL = `${PREFIX}.all`;
/** Gateway ids may hold dots (host names), which NATS reads as token separators. */
const subjectOf = (gatewayId: string) => `${PREFIX}.${Buffer.from(gatewayId).toString('base64url')}`;
const httpSubjectOf = (gatewayId: string) => `${subjectOf(gatewayId)}.http`;
const CONNECT_TIMEOUT_MS = 5_000;

export class NatsBus {
  private readonly subscriptions: Subscription[] = [];

  private constructor(
    private readonly nc: NatsConnection,
    private readonly gatewayId: string,
    private readonly log: Logger,
  ) {}

  /**
   * Joins the bus; throws a clear error if NATS cannot be reached, or if its largest message is
   * smaller than the largest frame a gateway may have to carry.
   */
  static async join(
    servers: string[],
    gatewayId: string,
    largestFrameBytes: number,
    handlers: BusHandlers,
    log: Logger,
  ): Promise<NatsBus> {
    log = log.child({ part: 'nats-bus' });
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers,
        name: `dormouse-gateway ${gatewayId}`,
        noEcho: true,
        timeout: CONNECT_TIMEOUT_MS,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
      });
    } catch (err) {
      throw new Error(`cannot reach NATS at ${servers.join(',')} (DORMOUSE_NATS_URL): ${(err as Error).message}`, {
        cause: err,
      });
    }
    const maxPayload = nc.info?.max_payload ?? 0;
    if (maxPayload < largestFrameBytes) {
      await nc.close();
      throw new Error(
        `NATS at ${servers.join(',')} takes messages of at most ${maxPayload} bytes; gateways need ${largestFrameBytes} (set max_payload in its configuration)`,
      );
    }
    const bus = new NatsBus(nc, gatewayId, log);
    bus.listen(handlers);
    await nc.flush();
    log.info({ servers, maxPayload }, 'joined the gateway bus');
    return bus;
  }

  /** A message to one gateway. */
  send(gatewayId: string, message: BusMessage): void {
    this.publish(subjectOf(gatewayId), message);
  }

  /** A message to every other gateway. */
  broadcast(message: BusMessage): void {
    this.publish(ALL, message);
  }

  /** An HTTP request to the gateway of the actor's runner; a missing or silent gateway is a reply too. */
  async request(gatewayId: string, request: BusHttpRequest, timeoutMs: number): Promise<BusHttpReply> {
    try {
      const reply = await this.nc.request(httpSubjectOf(gatewayId), JSON.stringify(request), { timeout: timeoutMs });
      const parsed = parseBus(busHttpReply, reply.data);
      if (parsed.ok) return parsed.message;
      this.log.warn({ gatewayId, error: parsed.error }, 'unreadable HTTP reply on the bus');
      return { ok: false, error: 'internal', message: 'unreadable reply from the runner gateway' };
    } catch (err) {
      if (err instanceof RequestError && err.isNoResponders())
        return { ok: false, error: 'unreachable', message: `gateway ${gatewayId} is not on the bus` };
      if (err instanceof TimeoutError || (err instanceof RequestError && err.cause instanceof TimeoutError))
        return { ok: false, error: 'timeout', message: `gateway ${gatewayId} did not answer in ${timeoutMs} ms` };
      throw err;
    }
  }

  async close(): Promise<void> {
    for (const subscription of this.subscriptions) subscription.unsubscribe();
    await this.nc.drain().catch((err: unknown) => this.log.warn({ err }, 'draining the bus connection failed'));
  }

  private publish(subject: string, message: BusMessage): void {
    try {
      this.nc.publish(subject, JSON.stringify(message));
    } catch (err) {
      // Closed or draining: the gateway is shutting down, and its peers will hear of its runners.
      this.log.debug({ err, type: message.type }, 'bus message not published');
    }
  }

  private listen(handlers: BusHandlers): void {
    const own = subjectOf(this.gatewayId);
    const onMessage = (err: Error | null, msg: Msg) => {
      if (err) return this.log.error({ err }, 'bus subscription failed');
      const parsed = parseBus(busMessage, msg.data);
      if (!parsed.ok) return this.log.warn({ subject: msg.subject, error: parsed.error }, 'unreadable bus message');
      handlers.onMessage(parsed.message, msg.subject === own);
    };
    const onHttp = (err: Error | null, msg: Msg) => {
      if (err) return this.log.error({ err }, 'bus HTTP subscription failed');
      const parsed = parseBus(busHttpRequest, msg.data);
      const reply: Promise<BusHttpReply> = parsed.ok
        ? handlers.onHttpRequest(parsed.message)
        : Promise.resolve({ ok: false, error: 'internal', message: parsed.error });
      reply
        .catch((e: unknown): BusHttpReply => {
          this.log.error({ err: e }, 'serving an HTTP request from the bus failed');
          return { ok: false, error: 'internal', message: 'the runner gateway failed' };
        })
        .then((r) => msg.respond(JSON.stringify(r)))
        .catch((e: unknown) => this.log.debug({ err: e }, 'HTTP reply not sent'));
    };
    this.subscriptions.push(
      this.nc.subscribe(own, { callback: onMessage }),
      this.nc.subscribe(ALL, { callback: onMessage }),
      this.nc.subscribe(httpSubjectOf(this.gatewayId), { callback: onHttp }),
    );
    void this.watchStatus(handlers);
  }

  /** One line per change of the connection; whatever may have lost messages tells the tunnel. */
  private async watchStatus(handlers: BusHandlers): Promise<void> {
    for await (const status of this.nc.status()) {
      if (status.type === 'disconnect') this.log.warn({ server: status.server }, 'gateway bus disconnected');
      else if (status.type === 'reconnect') {
        this.log.info({ server: status.server }, 'gateway bus reconnected');
        handlers.onMessagesLost();
      } else if (status.type === 'slowConsumer') {
        this.log.warn({ subject: status.sub.getSubject() }, 'gateway bus: slow consumer, messages dropped');
        handlers.onMessagesLost();
      }
    }
  }
}
