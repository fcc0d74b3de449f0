/**
 * Pre-bundles the workflow code once (webpack, through the SDK) so workers start in
 * milliseconds instead of bundling on every start. `npm start`, the tests and the Docker image
 * build the bundle and hand its path to workers through DORMOUSE_WORKFLOW_BUNDLE.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';

export const WORKFLOWS_PATH = fileURLToPath(new URL('./workflows/index.ts', import.meta.url));

/** Bundles the workflows of `workflowsPath` (by default Dormouse's own) into `outPath`. */
export async function writeWorkflowBundle(outPath: string, workflowsPath: string = WORKFLOWS_PATH): Promise<string> {
  const { code } = await bundleWorkflowCode({ workflowsPath, logger: quietBundlerLogger });
  await mkdir(dirname(outPath), { recursive: true });
  await writeFile(outPath, code);
  return outPath;
}

// The bundler reports every module at info; only problems matter here.
const quietBundlerLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string, meta?: unknown) => console.warn(message, meta ?? ''),
  error: (message: string, meta?: unknown) => console.error(message, meta ?? ''),
};

// `tsx src/workflows/bundle.ts <out>` builds the bundle from the command line.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = process.argv[2] ?? 'dist/workflow-bundle.js';
  writeWorkflowBundle(out).then(
    (path) => console.log(`workflow bundle written to ${path}`),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
