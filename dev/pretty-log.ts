/**
 * Human-readable logs for the dev tools run in a terminal (`npm start`, `npm run bench`): pino,
 * rendered by pino-pretty. Development tooling only: pino-pretty is a dev dependency.
 */
import { isatty } from 'node:tty';
import { pino, type Logger } from 'pino';
import PinoPretty from 'pino-pretty';
import type { Config } from '../src/config.js';

/** A logger writing readable lines to stdout (1) or stderr (2), in colour on a terminal. */
export function prettyLogger(level: Config['logLevel'], fd: 1 | 2): Logger {
  return pino(
    { level, base: undefined },
    PinoPretty({
      destination: fd,
      colorize: isatty(fd),
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname',
      sync: true,
    }),
  );
}
