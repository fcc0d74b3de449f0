/**
 * Resumable sessions (H10), the WebSocket subprotocol `dormouse.v1` between a client and any
 * gateway: one schema for both ends (the gateway, and the client SDK in src/client/).
 *
 * A client that asks for `dormouse.v1` speaks JSON text frames. Its first frame opens a new
 * session (`open`) or resumes one (`resume`). The gateway answers `session` once the actor holds
 * the connection: the token to resume with, the last client message the actor has made durable
 * (`index`) and the last actor frame the client acknowledged (`seq`). Then both ways are numbered:
 * the client's messages by `index` (exactly one more than the last, across every resume), the
 * actor's by `seq`; each side acknowledges what it holds (`ack`). The actor's outbox keeps every
 * frame the client has not acknowledged, so a client whose socket or gateway died resumes on any
 * gateway with its token and gets what it missed, while the actor sees one continuous connection.
 *
 * A resume is refused with SessionInvalid (no such session, or a wrong token) or SessionExpired
 * (its socket was lost longer ago than the retention, DORMOUSE_SESSION_RETENTION_MS); a frame
 * that breaks these rules closes the socket with SessionProtocolError.
 */
import { z } from 'zod';
import { parseFrame, type ParseResult } from './runner-protocol.js';

export const SESSION_SUBPROTOCOL = 'dormouse.v1';

const index = z.number().int().min(0);
/** `<requestId>.<secret>`: the connection it resumes, and proof that the client was given it. */
export const sessionToken = z
  .string()
  .max(200)
  .regex(/^[0-9a-f-]{36}\.[A-Za-z0-9_-]{20,}$/, 'not a session token');

export const clientSessionFrame = z.discriminatedUnion('t', [
  z.strictObject({ t: z.literal('open') }),
  /** `seq`: the last actor frame received; `index`: the last own message the gateway acknowledged. */
  z.strictObject({ t: z.literal('resume'), session: sessionToken, seq: index, index }),
  z.strictObject({ t: z.literal('msg'), index: index.min(1), data: z.string(), binary: z.boolean() }),
  z.strictObject({ t: z.literal('ack'), seq: index.min(1) }),
]);
export type ClientSessionFrame = z.infer<typeof clientSessionFrame>;

export const gatewaySessionFrame = z.discriminatedUnion('t', [
  z.strictObject({ t: z.literal('session'), session: sessionToken, index, seq: index }),
  z.strictObject({ t: z.literal('msg'), seq: index.min(1), data: z.string(), binary: z.boolean() }),
  z.strictObject({ t: z.literal('ack'), index: index.min(1) }),
]);
export type GatewaySessionFrame = z.infer<typeof gatewaySessionFrame>;

export function parseClientSessionFrame(raw: string): ParseResult<ClientSessionFrame> {
  return parseFrame(clientSessionFrame, raw);
}

export function parseGatewaySessionFrame(raw: string): ParseResult<GatewaySessionFrame> {
  return parseFrame(gatewaySessionFrame, raw);
}
