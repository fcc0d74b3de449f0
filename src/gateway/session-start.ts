/**
 * The start of a resumable session (H10): the client's first `dormouse.v1` frame opens a new
 * session or resumes one. A resume takes the session over from whichever gateway held it (in
 * the registry, atomically); a wrong token, another actor's session, or one lost longer ago than
 * the retention closes the socket with the code that says so, and changes nothing.
 */
import { randomBytes } from 'node:crypto';
import type WebSocket from 'ws';
import { takeOverSession } from '../db/client-sessions.js';
import type { Db } from '../db/pool.js';
import { ClientCloseCode } from '../protocol/client-close-codes.js';
import { closeReason } from '../protocol/close-reason.js';
import { HANDSHAKE_TIMEOUT_MS } from '../protocol/runner-protocol.js';
import { parseClientSessionFrame } from '../protocol/session-protocol.js';
import { wsBuffer, wsText } from '../util/ws-data.js';
import type { SessionStart } from './client-socket.js';

export interface SessionStartDeps {
  db: Db;
  gatewayId: string;
  retentionMs: number;
}

/** A fresh token for a new connection: its request id, and a secret only the client will hold. */
function newSessionToken(requestId: string): string {
  return `${requestId}.${randomBytes(24).toString('base64url')}`;
}

/** How the session starts, and the frames the client sent meanwhile (the caller handles them next). */
export interface StartedSession {
  start: SessionStart;
  early: { data: Buffer; isBinary: boolean }[];
}

/**
 * Waits (bounded) for the client's first frame; resolves with how the session starts, or null
 * once the socket is closed with the reason. A new session's token names the request id the
 * socket is given.
 */
export function awaitSessionStart(
  ws: WebSocket,
  actorId: string,
  requestId: string,
  deps: SessionStartDeps,
): Promise<StartedSession | null> {
  return new Promise((resolve) => {
    const early: StartedSession['early'] = [];
    const keepEarly = (data: WebSocket.RawData, isBinary: boolean) => early.push({ data: wsBuffer(data), isBinary });
    const refuse = (code: number, reason: string) => {
      ws.off('message', keepEarly);
      ws.close(code, closeReason(reason));
      resolve(null);
    };
    const started = (start: SessionStart) => {
      ws.off('message', keepEarly);
      resolve({ start, early });
    };
    const timer = setTimeout(
      () => refuse(ClientCloseCode.SessionProtocolError, `no open or resume within ${HANDSHAKE_TIMEOUT_MS / 1000} s`),
      HANDSHAKE_TIMEOUT_MS,
    );
    ws.once('close', () => {
      clearTimeout(timer);
      resolve(null);
    });
    ws.once('message', (data, isBinary) => {
      clearTimeout(timer);
      // The client need not wait for the answer: what it sends meanwhile is kept, in order.
      ws.on('message', keepEarly);
      const parsed = isBinary ? null : parseClientSessionFrame(wsText(data));
      if (!parsed?.ok) return refuse(ClientCloseCode.SessionProtocolError, parsed ? parsed.error : 'binary frame');
      const frame = parsed.message;
      if (frame.t === 'open') return started({ requestId, token: newSessionToken(requestId) });
      if (frame.t !== 'resume')
        return refuse(ClientCloseCode.SessionProtocolError, 'the first frame must be open or resume');
      const resumedId = frame.session.slice(0, frame.session.indexOf('.'));
      takeOverSession(deps.db, {
        requestId: resumedId,
        actorId,
        token: frame.session,
        gatewayId: deps.gatewayId,
        retentionMs: deps.retentionMs,
      }).then(
        (taken) => {
          if (!taken.ok && taken.why === 'expired')
            return refuse(ClientCloseCode.SessionExpired, 'the session was lost longer ago than its retention');
          if (!taken.ok) return refuse(ClientCloseCode.SessionInvalid, 'no such session for this actor');
          started({ requestId: resumedId, token: frame.session, resumed: { seq: frame.seq, index: frame.index } });
        },
        () => refuse(ClientCloseCode.InternalError, 'could not read the session'),
      );
    });
  });
}
