import { configDefaults, defineConfig } from 'vitest/config';

/** In-process tests: pure units, and the workflow on the time-skipping test server (`npm run test:fast`). */
const FAST_TESTS = ['test/unit/**/*.test.ts', 'test/workflows/**/*.test.ts'];

export default defineConfig({
  test: {
    // For both projects together: each process test file runs a whole stack, and more than two
    // test files at once overload a two-core machine.
    maxWorkers: 2,
    teardownTimeout: 60_000,
    projects: [
      {
        test: {
          name: 'fast',
          include: FAST_TESTS,
          // Temporal's native worker and test server connections: separate processes.
          pool: 'forks',
          // Starting the test server and bundling the workflow take seconds on a busy machine, and
          // a workflow test waits for the workflow to act several times.
          testTimeout: 30_000,
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'process',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...FAST_TESTS],
          // One Temporal dev server, one Postgres and one workflow bundle for the whole run; a run
          // of only the fast tests does not start them.
          globalSetup: ['test/harness/global-setup.ts'],
          // Test files spawn real processes and hold native Temporal connections: separate processes.
          pool: 'forks',
          // Stacks start real processes, and some tests wait out real timeouts (start threshold, ...).
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
