/** Temporary directories for a stack's state and logs (tests, benchmarks). */
import { chmod, mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ScratchDirectories {
  root: string;
  /** Server state: deleted when the stack stops. */
  stateDir: string;
  /** Process logs: kept for debugging. */
  logDir: string;
}

export async function scratchDirectories(prefix: string): Promise<ScratchDirectories> {
  const root = await mkdtemp(join(tmpdir(), prefix));
  // As root the embedded Postgres runs as the `postgres` user, who must get through to its data.
  await chmod(root, 0o755);
  const stateDir = join(root, 'state');
  const logDir = join(root, 'logs');
  await mkdir(stateDir);
  await mkdir(logDir);
  return { root, stateDir, logDir };
}
