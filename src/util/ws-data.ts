/**
 * A `ws` message arrives as a Buffer, an ArrayBuffer or a list of Buffer fragments depending on
 * the socket's binaryType; every reader goes through these two instead of `data.toString()`,
 * which would join fragments with commas.
 */
import type { RawData } from 'ws';

export function wsBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

export function wsText(data: RawData): string {
  return wsBuffer(data).toString('utf8');
}
