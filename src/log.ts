/**
 * Structured logs (pino). Every process makes one root logger and hands children to its parts;
 * state changes log at `info`, hot paths (frames, pings, acks) at `debug`.
 */
import { pino, type Logger } from 'pino';
import type { Config } from './config.js';

export type { Logger } from 'pino';

export function createLogger(component: string, level: Config['logLevel']): Logger {
  return pino({ level, base: { component, pid: process.pid } });
}
