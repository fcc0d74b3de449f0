/**
 * The actor side of tunnelled WebSockets: a connection's persisted record (request and gateway
 * ids, last processed index, path, headers, attachment), and the reconciliation a start runs
 * between the snapshot L of hibernating requests and the persisted records M (H5).
 */
import type { HibernatingRequestRef } from '../protocol/runner-protocol.js';
import type { Connection } from './define-actor.js';

export const CONNECTION_PREFIX = '__dormouse/conn/';
export const ATTACHMENT_LIMIT_BYTES = 4096;
const RECORD_VERSION = 1;

export interface ConnectionRecord {
  v: typeof RECORD_VERSION;
  requestId: string;
  gatewayId: string;
  /** The last client message index processed (and persisted with its effects). */
  lastIndex: number;
  /** The last actor→client frame seq assigned (H9); absent in records written before outboxes. */
  outSeq?: number;
  path: string;
  /** The request headers, credentials removed unless the actor type asked for them (persistedHeaders). */
  headers: Record<string, string>;
  attachment: unknown;
}

export function connectionKey(requestId: string): string {
  return `${CONNECTION_PREFIX}${requestId}`;
}

/** Parses a stored record; an unknown version or shape is treated as no record (not restorable). */
export function parseRecord(raw: Buffer): ConnectionRecord | null {
  try {
    const value = JSON.parse(raw.toString()) as Partial<ConnectionRecord>;
    if (value.v !== RECORD_VERSION || typeof value.requestId !== 'string' || typeof value.gatewayId !== 'string')
      return null;
    if (typeof value.lastIndex !== 'number' || typeof value.path !== 'string' || typeof value.headers !== 'object')
      return null;
    if (value.outSeq !== undefined && (typeof value.outSeq !== 'number' || !Number.isInteger(value.outSeq)))
      return null;
    return value as ConnectionRecord;
  } catch {
    return null;
  }
}

/** Headers that carry credentials: never persisted unless the actor type names them. */
const CREDENTIAL_HEADER =
  /^(authorization|proxy-authorization|cookie|set-cookie)$|(^|-)(auth|api-?key|token|secret|password|passwd|session|credentials?|signature)(-|$)/i;

/**
 * The headers a connection record may persist: everything but credentials (Authorization,
 * Cookie, API keys, tokens…), except those the actor type asks for by name (`persistHeaders`).
 * A hibernating connection's record outlives the request by hours; a secret in it is a secret at rest.
 */
export function persistedHeaders(
  headers: Readonly<Record<string, string>>,
  allowed: readonly string[] = [],
): Record<string, string> {
  const keep = new Set(allowed.map((h) => h.toLowerCase()));
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers))
    if (keep.has(name.toLowerCase()) || !CREDENTIAL_HEADER.test(name)) out[name] = value;
  return out;
}

export interface Reconciliation {
  /** L∩M: restored without running the open handler. */
  restore: ConnectionRecord[];
  /** L\\M: the gateway holds them, the actor has no record: closed toward the gateway. */
  unknown: HibernatingRequestRef[];
  /** M\\L: the actor has a record, no live request remains: reported as disconnected. */
  lost: ConnectionRecord[];
}

/**
 * H5. Pure: a connection is the same on both sides if its request id is (gateways make them
 * unique). Its gateway is the snapshot's: a resumed session (H10) keeps its request id and moves
 * to the gateway it resumed on, which the actor's record may not know yet.
 */
export function reconcile(snapshot: HibernatingRequestRef[], records: ConnectionRecord[]): Reconciliation {
  const gatewayOf = new Map(snapshot.map((r) => [r.requestId, r.gatewayId]));
  const recorded = new Set(records.map((r) => r.requestId));
  const restore: ConnectionRecord[] = [];
  const lost: ConnectionRecord[] = [];
  for (const record of records) {
    const gatewayId = gatewayOf.get(record.requestId);
    if (gatewayId === undefined) lost.push(record);
    else restore.push({ ...record, gatewayId });
  }
  return { restore, unknown: snapshot.filter((r) => !recorded.has(r.requestId)), lost };
}

export interface ConnectionHost {
  send(conn: ActorConnection, data: string | Uint8Array): void;
  close(conn: ActorConnection, code: number, reason: string): void;
  /** The attachment changed: persist the record with the next write. */
  changed(conn: ActorConnection): void;
}

/** One open connection as the actor sees it. */
export class ActorConnection implements Connection {
  closed = false;
  /** The record must be written (attachment or index changed). */
  dirty = false;

  /**
   * @param liveHeaders the request's full headers while the request that opened it is in this
   *   process; a restored connection has only what its record persisted.
   */
  constructor(
    readonly record: ConnectionRecord,
    readonly hibernatable: boolean,
    private readonly host: ConnectionHost,
    private readonly liveHeaders: Readonly<Record<string, string>> = record.headers,
  ) {}

  get id(): string {
    return this.record.requestId;
  }
  get path(): string {
    return this.record.path;
  }
  get headers(): Readonly<Record<string, string>> {
    return this.liveHeaders;
  }
  get attachment(): unknown {
    return this.record.attachment ?? null;
  }
  get lastIndex(): number {
    return this.record.lastIndex;
  }

  async setAttachment(value: unknown): Promise<void> {
    const size = Buffer.byteLength(JSON.stringify(value ?? null));
    if (size > ATTACHMENT_LIMIT_BYTES)
      throw new Error(`attachment of ${size} bytes is over the ${ATTACHMENT_LIMIT_BYTES}-byte limit`);
    this.record.attachment = value ?? null;
    this.dirty = true;
    this.host.changed(this);
  }

  send(data: string | Uint8Array): void {
    if (!this.closed) this.host.send(this, data);
  }

  close(code = 1000, reason = ''): void {
    if (this.closed) return;
    this.closed = true;
    this.host.close(this, code, reason);
  }
}
