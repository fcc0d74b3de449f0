/**
 * Ctrl-C handling for the long-running dev tools (`npm start`, `npm run bench`), which must stop
 * the processes they started, in order, before they exit.
 */
import type { Logger } from '../src/log.js';

/**
 * One Ctrl-C in a terminal arrives two or three times within a few tens of milliseconds: from
 * the terminal itself and relayed by npm (and tsx). Repeats within this window are that one.
 */
const REPEAT_WINDOW_MS = 1_000;

/**
 * The first SIGINT/SIGTERM aborts the returned signal (start-up stops at its next step, then
 * everything is stopped in order); a later one exits at once, and the exit handlers of
 * dev/processes.ts kill what still runs.
 */
export function onShutdownSignal(log: Logger): AbortSignal {
  const controller = new AbortController();
  let firstAt = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!controller.signal.aborted) {
      firstAt = Date.now();
      log.info(`${signal}: stopping (press Ctrl-C again to force)`);
      controller.abort(new Error(`interrupted by ${signal}`));
    } else if (Date.now() - firstAt > REPEAT_WINDOW_MS) {
      log.warn(`${signal} again: exiting now`);
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return controller.signal;
}
