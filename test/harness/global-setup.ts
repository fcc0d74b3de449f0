/**
 * Once per `npm test` run: the Temporal CLI dev server, Postgres (DATABASE_URL or an embedded
 * one) and the workflow bundle, shared by every test file; each test file then makes its own
 * database and namespace (test/harness/stack.ts). Everything is torn down afterwards, also when
 * tests fail; a failed set-up tears down what it had started.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
// Resolves 'vitest' for the ProvidedContext augmentation below.
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { loadConfig } from '../../src/config.js';
import { startEmbeddedPostgres } from '../../dev/postgres.js';
import { resolveTemporalCli } from '../../dev/temporal-cli.js';
import { startTemporalDevServer } from '../../dev/temporal-server.js';
import { scratchDirectories } from '../../dev/scratch-dirs.js';
import { allSettledOrThrow } from '../../dev/wait.js';
import { writeWorkflowBundle } from '../../src/workflow-bundle.js';

/** The test server suggests continue-as-new past this many history events (production: thousands). */
export const CONTINUE_AS_NEW_AFTER_EVENTS = 150;

declare module 'vitest' {
  export interface ProvidedContext {
    /** `host:port` of the run's Temporal dev server. */
    temporalAddress: string;
    /** Base URL of that server's Web UI (`http://127.0.0.1:<port>`), for the browser test. */
    temporalUiUrl: string;
    temporalCliPath: string;
    /** A superuser URL of the run's Postgres server; test files create their databases on it. */
    adminDatabaseUrl: string;
    /** The prebuilt workflow bundle, for DORMOUSE_WORKFLOW_BUNDLE. */
    workflowBundlePath: string;
    /** Where test stacks write their processes' logs; kept after the run for debugging. */
    logDir: string;
  }
}

type Cleanup = () => Promise<void>;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cleanups: Cleanup[] = [];
  const teardown = async (): Promise<void> => {
    const errors: unknown[] = [];
    for (const cleanup of cleanups.reverse()) await cleanup().catch((err: unknown) => errors.push(err));
    if (errors.length > 0) throw new AggregateError(errors, 'test run teardown failed');
  };

  try {
    const config = loadConfig();
    const { stateDir, logDir } = await scratchDirectories('dormouse-test-');
    // Logs stay for debugging; the servers' state goes.
    cleanups.push(async () => {
      await rm(stateDir, { recursive: true, force: true });
      console.log(`dormouse: the process logs of this run are in ${logDir}`);
    });

    const temporalCliPath = await resolveTemporalCli({ install: false });
    // In parallel; each registers its cleanup as soon as it has started.
    const [temporalServer, adminDatabaseUrl, workflowBundlePath] = await allSettledOrThrow([
      startTemporalDevServer({
        cliPath: temporalCliPath,
        // No uiPort: the Web UI on a free port, which test/temporal-ui.test.ts checks in a browser.
        dbFile: join(stateDir, 'temporal.db'),
        // Continue-as-new is suggested after a few generations instead of thousands of events,
        // so every test whose actor lives a while crosses a run boundary.
        dynamicConfig: { 'limit.historyCount.suggestContinueAsNew': CONTINUE_AS_NEW_AFTER_EVENTS },
      }).then((server) => {
        cleanups.push(() => server.stop());
        return server;
      }),
      config.databaseUrl
        ? Promise.resolve(config.databaseUrl)
        : startEmbeddedPostgres({ dataDir: join(stateDir, 'postgres'), persistent: false }).then((server) => {
            cleanups.push(() => server.stop());
            return server.url;
          }),
      writeWorkflowBundle(join(stateDir, 'workflow-bundle.js')),
    ]);

    if (temporalServer.uiUrl === null) throw new Error('the Temporal dev server was started without its Web UI');
    project.provide('temporalAddress', temporalServer.address);
    project.provide('temporalUiUrl', temporalServer.uiUrl);
    project.provide('temporalCliPath', temporalCliPath);
    project.provide('adminDatabaseUrl', adminDatabaseUrl);
    project.provide('workflowBundlePath', workflowBundlePath);
    project.provide('logDir', logDir);
    return teardown;
  } catch (err) {
    await teardown().catch(() => undefined);
    throw err;
  }
}
