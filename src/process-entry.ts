/**
 * Modules that are both an entry script and a library: `tsx src/worker.ts` runs a worker, while
 * the `dormouse` CLI and the tests import the same module for its functions. Such a module
 * exports its run function and ends with `runIfEntryScript(import.meta.url, run)`.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

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
