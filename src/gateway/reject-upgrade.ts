/**
 * The upgrade edge of the error model (src/errors.ts): refuses a WebSocket upgrade with the JSON
 * and status the HTTP edge would answer with.
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { DormouseError } from '../errors.js';

export function rejectUpgrade(socket: Duplex, err: DormouseError): void {
  const body = JSON.stringify(err.toJSON());
  const status = err.httpStatus;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
