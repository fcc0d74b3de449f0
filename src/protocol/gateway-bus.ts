/**
 * What gateways say to each other over NATS (DESIGN §2.1), one schema for both ends. A client
 * may hold its socket on one gateway while the actor's runner is connected to another: frames
 * for the runner go to the runner's gateway, the runner's frames back to the gateway holding the
 * request, each on the subject of the gateway addressed; what every gateway must hear (a runner
 * came or went, a start restored its connections) goes to all. HTTP is a request and its reply.
 */
import { z } from 'zod';
import {
  gatewayTunnelFrame,
  httpRequestMessage,
  httpResponseMessage,
  parseFrame,
  runnerTunnelFrame,
  wsRestored,
  type ParseResult,
} from './runner-protocol.js';

const gatewayId = z.string().min(1).max(200);
const runnerId = z.uuid();
const actorId = z.uuid();
const generation = z.number().int().min(1);

export const busMessage = z.discriminatedUnion('type', [
  /** To the runner's gateway: a frame for that runner, from the gateway holding the request. */
  z.strictObject({ type: z.literal('toRunner'), from: gatewayId, runnerId, frame: gatewayTunnelFrame }),
  /**
   * To the gateway holding the request (to all when the runner's gateway does not know which):
   * a frame of the runner, with what only the runner's gateway can tell, whether it delivered
   * that runner the start of the frame's actor generation (the speaks-for rule, speaks-for.ts).
   */
  z.strictObject({
    type: z.literal('fromRunner'),
    runnerId,
    startedHere: z.boolean(),
    frame: runnerTunnelFrame,
  }),
  /**
   * To all: a start restored these requests (H5); `holders` names, for each restored request,
   * the gateway whose row the start's snapshot listed: that gateway alone may close it toward
   * the actor if it no longer holds it.
   */
  z.strictObject({
    type: z.literal('restored'),
    runnerId,
    report: wsRestored,
    holders: z.record(z.string(), gatewayId),
  }),
  /** To all: a runner connected to (or left) the gateway `gatewayId`. */
  z.strictObject({ type: z.literal('runnerConnected'), runnerId, gatewayId }),
  z.strictObject({ type: z.literal('runnerDisconnected'), runnerId, gatewayId }),
  /** To all: the runner reports running the start its gateway delivered (the first-reply shortcut). */
  z.strictObject({
    type: z.literal('reportedRunning'),
    runnerId,
    actorId,
    generation,
  }),
  /**
   * To all: this gateway is back on the bus after an outage. What the others sent it meanwhile
   * may be lost, and so may what they sent to re-synchronise before it was back: they do it again.
   */
  z.strictObject({ type: z.literal('rejoined'), gatewayId }),
  /** To all: a session was resumed on this gateway (H10); whoever held it lets its old socket go. */
  z.strictObject({ type: z.literal('sessionTaken'), requestId: z.uuid(), gatewayId }),
]);
export type BusMessage = z.infer<typeof busMessage>;

/** An HTTP request for an actor generation, to the gateway its runner is connected to. */
export const busHttpRequest = z.strictObject({ runnerId, actorId, generation, request: httpRequestMessage });
export type BusHttpRequest = z.infer<typeof busHttpRequest>;

/** Its reply: the actor's response, or why there is none. */
export const busHttpReply = z.union([
  z.strictObject({ ok: z.literal(true), response: httpResponseMessage }),
  z.strictObject({
    ok: z.literal(false),
    /** notHosted: not that generation (any more); timeout: no answer in time; unreachable: the runner is not here. */
    error: z.enum(['notHosted', 'timeout', 'unreachable', 'internal']),
    message: z.string(),
  }),
]);
export type BusHttpReply = z.infer<typeof busHttpReply>;

const decoder = new TextDecoder();

/** Parses a message from the bus against a schema (the error names the first problem). */
export function parseBus<T>(schema: z.ZodType<T>, data: Uint8Array): ParseResult<T> {
  return parseFrame(schema, decoder.decode(data));
}
