/**
 * Preloaded (`node --import`) into every process the dev stack and the test harness spawn, so a
 * child never outlives its parent: if the parent dies without stopping it (SIGKILL, a crashed
 * test worker), the child is re-parented and stops itself. SIGTERM first, so it shuts down as
 * it would when stopped normally; SIGKILL if that takes too long.
 *
 * Plain JavaScript, not TypeScript: worker threads (the Temporal SDK runs workflows in them)
 * inherit the `--import` flags but not, at that point, tsx's loader.
 */
import { isMainThread } from 'node:worker_threads';

const CHECK_INTERVAL_MS = 1_000;
const SHUTDOWN_GRACE_MS = 10_000;

if (isMainThread) {
  const parentPid = process.ppid;
  const watchdog = setInterval(() => {
    if (process.ppid === parentPid) return;
    clearInterval(watchdog);
    process.kill(process.pid, 'SIGTERM');
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), SHUTDOWN_GRACE_MS).unref();
  }, CHECK_INTERVAL_MS);
  // The watchdog must not keep an otherwise finished process alive.
  watchdog.unref();
}
