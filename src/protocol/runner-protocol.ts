/**
 * The runner protocol: JSON text frames on the `/runners/connect` WebSocket. This one module is
 * imported by both ends (gateway and runner SDK) and every frame is validated on receipt.
 *
 * Ordering and delivery:
 * - Commands are indexed per (actor, generation) by `idx`; the runner acknowledges each and
 *   ignores a replayed one it has already applied. Unacknowledged commands are resent on reconnect.
 * - Events are indexed per (actor, generation) by `index`, starting at 0; the gateway acknowledges
 *   an event only once the actor workflow holds it (the signal call returned). The runner resends
 *   unacknowledged events on reconnect; the workflow ignores indices it has already seen.
 * - Actor→client frames (`wsMessage` from the runner) carry a per-connection `seq`; the gateway
 *   acknowledges the highest it handed to the client (`wsOutAck`) and drops a seq it already
 *   delivered. The runner resends unacknowledged frames on reconnect, and the next generation
 *   resends its outbox after its restore report (H9).
 */
import { z } from 'zod';
import { versionRange, type VersionRange } from './versions.js';

// ---------------------------------------------------------------------------------------------
// The contract's constants. Both ends read them from here, and so do the configuration's
// defaults (config.ts): a number written twice drifts.

/**
 * 2: tunnel frames share one envelope keyed by request id.
 * 3: actor→client frames carry a per-connection `seq`, acknowledged by the gateway (`wsOutAck`, H9);
 *    `wsOpen` carries the last one the gateway delivered; KV writes may trim key ranges.
 * 4: events `resting` and `active` (an actor resting in place, DESIGN §4.1).
 */
export const PROTOCOL_VERSION = 4;
/**
 * The versions this build speaks, as a runner and as a gateway (versions.ts). Its frames are
 * PROTOCOL_VERSION's only: lower `min` only together with schemas that read an older version.
 */
export const SUPPORTED_PROTOCOL_VERSIONS: VersionRange = { min: PROTOCOL_VERSION, max: PROTOCOL_VERSION };

/** WebSocket close codes on the runner socket. A runner gives up on UnsupportedVersion and Unauthorized; on any other, it reconnects. */
export const RunnerCloseCode = {
  GatewayShutdown: 1001,
  ProtocolError: 4000,
  UnsupportedVersion: 4001,
  HandshakeTimeout: 4002,
  Unauthorized: 4003,
  Replaced: 4004,
  /** The registry no longer knows this connection (a newer one replaced it, or the runner was declared lost): say hello again. */
  NotRegistered: 4005,
} as const;

/** Largest frame either end accepts: an HTTP response body, base64-encoded, plus its envelope. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;
/** From the upgrade to the welcome: the gateway waits this long for a hello, the runner for the welcome. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** How often a runner pings, unless the gateway says otherwise in its welcome (DORMOUSE_RUNNER_PING_MS). */
export const DEFAULT_PING_INTERVAL_MS = 3_000;
/**
 * A runner that hears no pong for this many ping intervals takes its socket for dead and
 * reconnects (to another gateway if it has several). With the defaults that is 9–12 s, inside
 * the 15 s runner-lost threshold: a runner whose gateway froze moves before its actors are lost.
 */
export const PONG_SILENCE_INTERVALS = 3;
/** How long a runner waits for the answer to a KV request. */
export const KV_TIMEOUT_MS = 30_000;
/** A runner's settings when its options say nothing; the configuration (config.ts) has the same defaults. */
export const RUNNER_DEFAULTS = {
  pool: 'default',
  capacity: 1000,
  /** Idle time before an actor rests in place (DESIGN §4.1). */
  restAfterMs: 10_000,
  /** Idle time before an actor sleeps (its generation stops, its runner slot is freed). */
  sleepAfterMs: 300_000,
  /** Resting actors' states kept in memory per runner, all together (src/runner/rest-cache.ts). */
  restCacheBytes: 16 * 1024 * 1024,
} as const;

/**
 * What an actor keeps, per connection, of the frames it sent that the gateway has not yet
 * acknowledged (its outbox, H9). Past either bound the connection closes with
 * ClientCloseCode.OutboxFull, never losing a frame silently. An actor type may set its own.
 */
export const DEFAULT_OUTBOX_LIMITS = { frames: 4096, bytes: 16 * 1024 * 1024 } as const;

const uuid = z.uuid();
/** An actor type's name, the same rule at the API, in the handshake and in `defineActor`. */
export const actorName = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, ".", "_" and "-" only, starting with a letter or digit');
const actorId = uuid;
const generation = z.number().int().min(1);
const index = z.number().int().min(0);
const headers = z.record(z.string(), z.string());
/** Bodies and KV values travel base64-encoded. */
const base64 = z.base64();

// ---------------------------------------------------------------------------------------------
// Commands (workflow → Postgres queue → gateway → runner)

export const hibernatingRequestRef = z.strictObject({
  gatewayId: z.string().min(1),
  requestId: uuid,
});
export type HibernatingRequestRef = z.infer<typeof hibernatingRequestRef>;

export const startReason = z.enum(['create', 'wake', 'alarm', 'crash', 'lost', 'drain', 'reschedule', 'threshold']);
export type StartReason = z.infer<typeof startReason>;

export const stopReason = z.enum(['sleep', 'stop', 'destroy', 'lost', 'reschedule', 'stale']);
export type StopReason = z.infer<typeof stopReason>;

export const startActorCommand = z.strictObject({
  kind: z.literal('startActor'),
  actorId,
  name: z.string().min(1),
  key: z.string().nullable(),
  input: z.unknown(),
  generation,
  reason: startReason,
  /** The snapshot of the actor's live hibernating requests taken for this start (DESIGN §1). */
  hibernatingRequests: z.array(hibernatingRequestRef),
});
export type StartActorCommand = z.infer<typeof startActorCommand>;

export const stopActorCommand = z.strictObject({
  kind: z.literal('stopActor'),
  actorId,
  generation,
  reason: stopReason,
});
export type StopActorCommand = z.infer<typeof stopActorCommand>;

export const runnerCommand = z.discriminatedUnion('kind', [startActorCommand, stopActorCommand]);
export type RunnerCommand = z.infer<typeof runnerCommand>;

export const commandEnvelope = z.strictObject({ actorId, generation, idx: index, command: runnerCommand });
export type CommandEnvelope = z.infer<typeof commandEnvelope>;

// ---------------------------------------------------------------------------------------------
// Events (runner → gateway → workflow signal)

export const stoppedCode = z.enum(['ok', 'error']);

export const actorEvent = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('running') }),
  z.strictObject({ kind: z.literal('stopped'), code: stoppedCode, message: z.string().max(4096).optional() }),
  z.strictObject({ kind: z.literal('intent'), intent: z.enum(['sleep', 'stop']) }),
  z.strictObject({ kind: z.literal('setAlarm'), alarmTs: z.number().int().nonnegative().nullable() }),
  // Resting in place and back (DESIGN §4.1): for the UI, never a condition of a wake.
  z.strictObject({ kind: z.literal('resting') }),
  z.strictObject({ kind: z.literal('active') }),
]);
export type ActorEvent = z.infer<typeof actorEvent>;

export const eventEnvelope = z.strictObject({ actorId, generation, index, event: actorEvent });
export type EventEnvelope = z.infer<typeof eventEnvelope>;

// ---------------------------------------------------------------------------------------------
// KV (runner → gateway → Postgres), fenced by (runner, actor, generation)

const kvKey = z.string().min(1).max(512);
export const kvOp = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('get'), keys: z.array(kvKey).max(1000) }),
  /** Puts and deletes in one transaction: state, connection metadata and indices commit together. */
  z.strictObject({
    kind: z.literal('write'),
    // A broadcast puts one outbox frame per hibernatable connection (H9): as many as an actor may hold.
    put: z.array(z.strictObject({ key: kvKey, value: base64 })).max(100_000),
    delete: z.array(kvKey).max(10_000),
    /** Key ranges deleted with the write: every key starting with `prefix` up to `through` (inclusive). */
    trim: z
      .array(z.strictObject({ prefix: kvKey, through: kvKey }))
      .max(10_000)
      .optional(),
  }),
  z.strictObject({ kind: z.literal('list'), prefix: z.string().max(512) }),
]);
export type KvOp = z.infer<typeof kvOp>;

export const kvEntry = z.strictObject({ key: z.string(), value: base64.nullable() });
export type KvEntry = z.infer<typeof kvEntry>;

// ---------------------------------------------------------------------------------------------
// Frames

const requestId = uuid;
/** Client→actor message indices start at 1; 0 means "none yet". */
const wsIndex = z.number().int().min(1);
/** Actor→client frame sequence numbers, per connection, start at 1; 0 means "none yet" (H9). */
const wsSeq = z.number().int().min(1);
const closeCode = z.number().int().min(1000).max(4999);
const closeText = z.string().max(123);

/*
 * The tunnel: client HTTP requests and WebSockets carried between the gateway holding the client
 * and the runner hosting the actor. Every tunnel frame, whatever it says, has the same envelope:
 * the request it belongs to and the actor generation it is for. A relay routes any of them by
 * `requestId` alone; only the two ends read `message`. (`wsRestored` is per actor, not per
 * request, and travels on its own.)
 */

/** Gateway → runner, about one request. */
export const httpRequestMessage = z.strictObject({
  kind: z.literal('httpRequest'),
  method: z.string().min(1).max(16),
  path: z.string().min(1),
  headers,
  body: base64.nullable(),
});

export const gatewayTunnelMessage = z.discriminatedUnion('kind', [
  httpRequestMessage,
  /**
   * A client WebSocket for the actor. `offer` is true when the gateway offers, after a start, a
   * hibernating connection that the start's snapshot missed (H8); `lastIndex` is the last client
   * message index the actor has acknowledged (0 for a new connection); `lastOutSeq` the last
   * actor→client frame the gateway delivered (H9).
   */
  z.strictObject({
    kind: z.literal('wsOpen'),
    gatewayId: z.string().min(1),
    path: z.string().min(1),
    headers,
    lastIndex: z.number().int().min(0),
    lastOutSeq: z.number().int().min(0),
    offer: z.boolean(),
  }),
  /** A client message; indices rise by one per connection across every sleep, crash and move (H6). */
  z.strictObject({ kind: z.literal('wsMessage'), index: wsIndex, data: z.string(), binary: z.boolean() }),
  /** The client closed, or the gateway closed it (limits, destroy, shutdown). */
  z.strictObject({ kind: z.literal('wsClose'), code: closeCode, reason: closeText }),
  /**
   * Actor→client frames up to `seq` are handed to the client's socket (H9): the actor's outbox
   * may drop them. Also sent when a connection resumes, with the last seq delivered so far.
   */
  z.strictObject({ kind: z.literal('wsOutAck'), seq: wsSeq }),
]);
export type GatewayTunnelMessage = z.infer<typeof gatewayTunnelMessage>;

/** Runner → gateway, about one request. */
export const httpResponseMessage = z.strictObject({
  kind: z.literal('httpResponse'),
  status: z.number().int().min(100).max(599),
  headers,
  body: base64.nullable(),
});

export const runnerTunnelMessage = z.discriminatedUnion('kind', [
  httpResponseMessage,
  /** The actor generation is not (or no longer) running on this runner: the gateway waits for the next one. */
  z.strictObject({ kind: z.literal('notHosted'), message: z.string().max(4096) }),
  /** The actor accepted a WebSocket; a hibernatable one has its metadata persisted already. */
  z.strictObject({ kind: z.literal('wsOpenAck'), hibernatable: z.boolean() }),
  /** Client message `index` is durable at the actor (ack after persist, H6). */
  z.strictObject({ kind: z.literal('wsAck'), index: wsIndex }),
  /**
   * A message from the actor to the client, numbered per connection (H9). It is durable in the
   * actor's outbox before it is sent; the gateway delivers each seq once, in order.
   */
  z.strictObject({ kind: z.literal('wsMessage'), seq: wsSeq, data: z.string(), binary: z.boolean() }),
  /** The actor closes (or refuses, or does not know) a connection. */
  z.strictObject({ kind: z.literal('wsClose'), code: closeCode, reason: closeText }),
]);
export type RunnerTunnelMessage = z.infer<typeof runnerTunnelMessage>;

const tunnelEnvelope = { type: z.literal('tunnel'), requestId, actorId, generation };
export const gatewayTunnelFrame = z.strictObject({ ...tunnelEnvelope, message: gatewayTunnelMessage });
export type GatewayTunnelFrame = z.infer<typeof gatewayTunnelFrame>;
export const runnerTunnelFrame = z.strictObject({ ...tunnelEnvelope, message: runnerTunnelMessage });
export type RunnerTunnelFrame = z.infer<typeof runnerTunnelFrame>;

/** The request and actor generation a tunnel frame is about. */
export type TunnelAddress = Pick<GatewayTunnelFrame, 'requestId' | 'actorId' | 'generation'>;
/** One kind of tunnel message, e.g. `TunnelMessage<GatewayTunnelMessage, 'wsOpen'>`. */
export type TunnelMessage<M extends { kind: string }, K extends M['kind']> = Extract<M, { kind: K }>;

/**
 * Sent on start, before the actor reports running: the snapshot's requests it restored, with the
 * last index each had processed. The gateway resends what follows and offers the rest (H5, H8).
 */
export const wsRestored = z.strictObject({
  type: z.literal('wsRestored'),
  actorId,
  generation,
  requests: z.array(z.strictObject({ requestId, lastIndex: z.number().int().min(0) })).max(100_000),
});
export type WsRestored = z.infer<typeof wsRestored>;

export const runnerToGateway = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('hello'),
    /** The versions this runner speaks; the welcome names the one the gateway chose (versions.ts). */
    protocolVersions: versionRange,
    runnerId: uuid,
    name: z.string().min(1).max(200),
    pool: z.string().min(1).max(200),
    capacity: z.number().int().positive().max(100_000),
    /** The actor types (names) it can host; allocation only places those here. */
    actorNames: z.array(actorName).min(1).max(1000),
    /** The actors this runner process hosts right now, so a reconnect can be fenced. */
    actors: z.array(z.strictObject({ actorId, generation })).max(100_000),
  }),
  z.strictObject({
    type: z.literal('ackCommands'),
    acks: z.array(z.strictObject({ actorId, generation, idx: index })),
  }),
  z.strictObject({ type: z.literal('events'), events: z.array(eventEnvelope).min(1).max(1000) }),
  z.strictObject({ type: z.literal('kvRequest'), kvId: index, actorId, generation, op: kvOp }),
  z.strictObject({ type: z.literal('ping'), ts: z.number() }),
  runnerTunnelFrame,
  /** The runner is shutting down: allocate nothing more to it; it stops its actors next. */
  z.strictObject({ type: z.literal('drain') }),
  wsRestored,
]);
export type RunnerToGateway = z.infer<typeof runnerToGateway>;

export const gatewayToRunner = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('welcome'),
    /** The highest version both ends speak: the rest of the conversation is in it. */
    protocolVersion: z.number().int(),
    runnerId: uuid,
    gatewayId: z.string(),
    pingIntervalMs: z.number().int().positive(),
    /** Actors the runner reported in its hello that the registry has moved on from: stop them silently. */
    staleActors: z.array(z.strictObject({ actorId, generation })),
  }),
  z.strictObject({ type: z.literal('commands'), commands: z.array(commandEnvelope).min(1) }),
  z.strictObject({ type: z.literal('ackEvents'), acks: z.array(z.strictObject({ actorId, generation, index })) }),
  z.strictObject({
    type: z.literal('kvResponse'),
    kvId: index,
    result: z.discriminatedUnion('ok', [
      z.strictObject({ ok: z.literal(true), entries: z.array(kvEntry) }),
      z.strictObject({ ok: z.literal(false), code: z.string(), message: z.string() }),
    ]),
  }),
  z.strictObject({ type: z.literal('pong'), ts: z.number() }),
  gatewayTunnelFrame,
]);
export type GatewayToRunner = z.infer<typeof gatewayToRunner>;

export type ParseResult<T> = { ok: true; message: T } | { ok: false; error: string };

/** Parses one text frame against a schema; the error names the first problem. */
export function parseFrame<T>(schema: z.ZodType<T>, raw: string): ParseResult<T> {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { ok: false, error: 'frame is not valid JSON' };
  }
  const result = schema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    return {
      ok: false,
      error: `invalid frame: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'unknown'}`,
    };
  }
  return { ok: true, message: result.data };
}

export function parseRunnerFrame(raw: string): ParseResult<RunnerToGateway> {
  return parseFrame(runnerToGateway, raw);
}

export function parseGatewayFrame(raw: string): ParseResult<GatewayToRunner> {
  return parseFrame(gatewayToRunner, raw);
}
