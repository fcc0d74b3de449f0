/**
 * Modules that are both an entry script and a library: `tsx src/worker.ts` runs a worker, while
 * the `dormouse` CLI and the tests import the same module for its functions. Such a module
 * exports its run function and ends with `runIfEntryScript(import.meta.url, run)`.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadConfig, type Config } from './config.js';
import { createLogger, type Logger } from './log.js';

/** A long-running part (worker, gateway) as its entry script sees it. */
export interface Service {
  /** Settles if the service stops by itself; rejects if it failed. */
  done?: Promise<unknown>;
  stop(): Promise<void>;
}

/**
 * Runs a service from the environment until SIGINT or SIGTERM (or until it stops by itself),
 * then stops it. Its failure, a bad configuration included, goes to the same pino stream as
 * everything else, so that whoever collects the logs sees why it died. Resolves with the exit code.
 */
export async function runService(
  component: string,
  start: (config: Config, log: Logger) => Promise<Service>,
): Promise<number> {
  // Made before the configuration is read, so that a bad configuration is logged like any failure.
  const log = createLogger(component, 'info');
  try {
    const config = loadConfig();
    log.level = config.logLevel;
    const service = await start(config, log);
    const signal = await Promise.race([shutdownSignal(), service.done ?? new Promise<never>(() => undefined)]);
    if (typeof signal === 'string') {
      log.info({ signal }, 'shutting down');
      await service.stop();
    }
    log.info('stopped');
    return 0;
  } catch (err) {
    log.fatal({ err }, `${component} failed`);
    return 1;
  }
}

/**
 * Runs `run` when the module at `moduleUrl` is the script Node was started with, then exits with
 * the code it resolves with: whatever it leaves open (a stubborn connection) must not keep a
 * finished process alive.
 */
export function runIfEntryScript(moduleUrl: string, run: () => Promise<number>): void {
  if (isEntryScript(moduleUrl)) void run().then((code) => process.exit(code));
}

function isEntryScript(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  // argv[1] is the path as given, the module URL the real path: compare real paths, so that a
  // checkout reached through a symlink still runs instead of silently doing nothing.
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}

/**
 * Resolves with the first SIGINT or SIGTERM. Both handlers go once it fires, so a second signal
 * takes Node's default action and ends a shutdown that hangs.
 */
export function shutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const signals = ['SIGINT', 'SIGTERM'] as const;
    const onSignal = (signal: NodeJS.Signals): void => {
      for (const s of signals) process.off(s, onSignal);
      resolve(signal);
    };
    for (const s of signals) process.on(s, onSignal);
  });
}
