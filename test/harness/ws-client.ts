/** A real WebSocket client for the tests: connects through the gateway, records what it hears. */
import WebSocket from 'ws';
import { waitFor } from './wait.js';
import { wsText } from '../../src/util/ws-data.js';

export interface Closed {
  code: number;
  reason: string;
}

export class TestClient {
  readonly received: string[] = [];
  readonly closed: Promise<Closed>;
  private closedWith: Closed | null = null;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => this.received.push(wsText(data)));
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closedWith = { code, reason: reason.toString() };
        resolve(this.closedWith);
      });
    });
  }

  /** Opens `/actors/:actorId/ws<path>`; rejects with the HTTP status if the upgrade is refused. */
  static connect(gatewayUrl: string, actorId: string, path = '', timeoutMs = 10_000): Promise<TestClient> {
    const ws = new WebSocket(`${gatewayUrl.replace(/^http/, 'ws')}/actors/${actorId}/ws${path}`);
    const client = new TestClient(ws);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`websocket to ${actorId} did not open in ${timeoutMs} ms`)),
        timeoutMs,
      );
      ws.once('open', () => {
        clearTimeout(timer);
        resolve(client);
      });
      ws.once('unexpected-response', (_req, res) => {
        clearTimeout(timer);
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () =>
          reject(
            Object.assign(new Error(`upgrade refused: ${res.statusCode} ${body}`), { status: res.statusCode, body }),
          ),
        );
      });
      ws.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  get isClosed(): Closed | null {
    return this.closedWith;
  }

  send(text: string): void {
    this.ws.send(text);
  }

  /** The received messages parsed as JSON. */
  json<T = unknown>(): T[] {
    return this.received.map((m) => JSON.parse(m) as T);
  }

  /** Waits until `count` messages have arrived. */
  async waitForMessages(count: number, timeoutMs = 20_000): Promise<string[]> {
    await waitFor(() => this.received.length >= count, {
      timeoutMs,
      message: `${count} messages (have ${this.received.length})`,
    });
    return this.received;
  }

  /** Waits for the close, bounded. */
  async waitForClose(timeoutMs = 20_000): Promise<Closed> {
    return waitFor(() => this.closedWith ?? undefined, { timeoutMs, message: 'the socket to close' });
  }

  close(code = 1000, reason = ''): void {
    this.ws.close(code, reason);
  }

  /** Drops the TCP connection without a close frame. */
  terminate(): void {
    this.ws.terminate();
  }
}
