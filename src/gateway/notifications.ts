/**
 * The gateway's LISTEN connection. One dedicated client; if it drops, it reconnects with
 * backoff and calls `onReconnect`, because notifications sent meanwhile are lost and the
 * listeners must re-read what they care about. It calls it after every failed attempt too: while
 * the connection is down, those re-reads are the only way commands reach runners and state
 * changes reach sockets (polling at the backoff's pace, at most every 5 s).
 */
import pg from 'pg';
import type { Logger } from '../log.js';
import { retryWithBackoff } from '../util/backoff.js';

export type NotificationHandler = (payload: string) => void;

export class NotificationListener {
  private client: pg.Client | null = null;
  private closed = false;
  private readonly handlers = new Map<string, NotificationHandler>();

  constructor(
    private readonly databaseUrl: string,
    private readonly log: Logger,
    private readonly onReconnect: () => void,
  ) {}

  on(channel: string, handler: NotificationHandler): void {
    this.handlers.set(channel, handler);
  }

  async start(): Promise<void> {
    this.client = await this.connect();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client?.end().catch(() => undefined);
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.databaseUrl, application_name: 'dormouse-gateway-listen' });
    // Listening for errors before connecting: a termination that arrives in the same read as the
    // end of the handshake is emitted before `connect()` resolves.
    client.on('error', (err) => {
      this.log.error({ err }, 'LISTEN connection failed');
      void this.reconnect(client);
    });
    await client.connect();
    client.on('notification', (n) => {
      const handler = this.handlers.get(n.channel);
      if (handler && n.payload !== undefined) handler(n.payload);
    });
    for (const channel of this.handlers.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    return client;
  }

  private async reconnect(failed: pg.Client): Promise<void> {
    if (this.closed || this.client !== failed) return;
    this.client = null;
    await failed.end().catch(() => undefined);
    const client = await retryWithBackoff(() => this.connect(), {
      stopped: () => this.closed,
      onError: (err, retryInMs) => {
        this.log.warn({ err, retryInMs }, 'LISTEN reconnect failed');
        if (!this.closed) this.onReconnect();
      },
    });
    if (!client) return;
    this.client = client;
    this.log.info('LISTEN connection restored');
    this.onReconnect();
  }
}
