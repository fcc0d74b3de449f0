/**
 * KV requests from actors to the gateway. Every operation is idempotent, so a request in flight
 * when the socket drops is simply sent again after the reconnect.
 */
import { Fenced } from '../errors.js';
import {
  KV_TIMEOUT_MS,
  type GatewayToRunner,
  type KvEntry,
  type KvOp,
  type RunnerToGateway,
} from '../protocol/runner-protocol.js';

type KvRequest = Extract<RunnerToGateway, { type: 'kvRequest' }>;
type KvResponse = Extract<GatewayToRunner, { type: 'kvResponse' }>;

interface Pending {
  frame: KvRequest;
  resolve: (entries: KvEntry[]) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class KvClient {
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly send: (frame: RunnerToGateway) => boolean) {}

  request(actorId: string, generation: number, op: KvOp): Promise<KvEntry[]> {
    const frame: KvRequest = { type: 'kvRequest', kvId: this.nextId++, actorId, generation, op };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(frame.kvId);
        reject(new Error(`kv ${op.kind} got no answer within ${KV_TIMEOUT_MS} ms`));
      }, KV_TIMEOUT_MS);
      this.pending.set(frame.kvId, { frame, resolve, reject, timer });
      this.send(frame); // if disconnected, resendAll() sends it after the reconnect
    });
  }

  onResponse(message: KvResponse): void {
    const pending = this.pending.get(message.kvId);
    if (!pending) return;
    this.pending.delete(message.kvId);
    clearTimeout(pending.timer);
    const result = message.result;
    if (result.ok) pending.resolve(result.entries);
    // The gateway's fence refused it (db/kv.ts): the same error, on this side of the socket.
    else if (result.code === 'fenced') pending.reject(new Fenced(result.message));
    else pending.reject(new Error(`kv ${pending.frame.op.kind} failed: ${result.message}`));
  }

  resendAll(): void {
    for (const { frame } of this.pending.values()) this.send(frame);
  }
}
