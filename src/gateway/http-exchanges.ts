/**
 * Tunnelled HTTP requests in flight, by request id. Each waits, bounded by the request timeout,
 * for the answer of the runner it went to; a runner that answers "not hosted", or disconnects
 * first, fails it with NotHosted, which sends the route round again for the next generation.
 */
import { randomUUID } from 'node:crypto';
import { ActorTimeout, NotHosted } from '../errors.js';
import type { GatewayToRunner, RunnerTunnelFrame } from '../protocol/runner-protocol.js';
import type { HeldRequest } from './speaks-for.js';

export interface TunnelledRequest {
  method: string;
  /** The path after `/actors/:id/http`, query string included. */
  path: string;
  headers: Record<string, string>;
  body: Buffer | null;
}

export interface TunnelledResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer | null;
}

/** The runner connection an exchange goes out on. */
export interface ExchangeRunner {
  readonly runnerId: string;
  readonly isClosed: boolean;
  send(frame: GatewayToRunner): void;
}

interface Exchange {
  actorId: string;
  runner: ExchangeRunner;
  resolve: (response: TunnelledResponse) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class HttpExchanges {
  private readonly pending = new Map<string, Exchange>();

  /** The exchange of that request, as the speaks-for rule sees it. */
  held(requestId: string): HeldRequest | undefined {
    const exchange = this.pending.get(requestId);
    return exchange && { actorId: exchange.actorId, runnerId: exchange.runner.runnerId };
  }

  /** Sends the request to the actor generation on `runner`; throws NotHosted or ActorTimeout. */
  send(
    runner: ExchangeRunner,
    actor: { actorId: string; generation: number },
    request: TunnelledRequest,
    timeoutMs: number,
  ): Promise<TunnelledResponse> {
    if (runner.isClosed) return Promise.reject(new NotHosted('runner disconnected'));
    const requestId = randomUUID();
    return new Promise<TunnelledResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new ActorTimeout(`actor did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(requestId, { actorId: actor.actorId, runner, resolve, reject, timer });
      runner.send({
        type: 'tunnel',
        requestId,
        actorId: actor.actorId,
        generation: actor.generation,
        message: {
          kind: 'httpRequest',
          method: request.method,
          path: request.path,
          headers: request.headers,
          body: request.body ? request.body.toString('base64') : null,
        },
      });
    });
  }

  /** The runner's answer (the tunnel has checked that it speaks for the request). */
  answer(frame: RunnerTunnelFrame): void {
    const { message } = frame;
    if (message.kind === 'httpResponse') {
      const body = message.body === null ? null : Buffer.from(message.body, 'base64');
      this.take(frame.requestId)?.resolve({ status: message.status, headers: message.headers, body });
    } else if (message.kind === 'notHosted') {
      this.take(frame.requestId)?.reject(new NotHosted(message.message));
    }
    // Any other kind is WebSocket talk, no answer to an HTTP request: ignored.
  }

  /** The runner's connection closed: what it did not answer, it never will. */
  runnerGone(runner: ExchangeRunner): void {
    for (const [requestId, exchange] of this.pending) {
      if (exchange.runner === runner)
        this.take(requestId)?.reject(new NotHosted(`runner disconnected before answering request ${requestId}`));
    }
  }

  private take(requestId: string): Exchange | undefined {
    const exchange = this.pending.get(requestId);
    if (!exchange) return undefined;
    this.pending.delete(requestId);
    clearTimeout(exchange.timer);
    return exchange;
  }
}
