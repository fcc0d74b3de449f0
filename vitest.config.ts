import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One Temporal dev server, one Postgres and one workflow bundle for the whole run.
    globalSetup: ['test/harness/global-setup.ts'],
    // Test files spawn real processes and hold native Temporal connections: separate processes.
    pool: 'forks',
    // Each test file runs a whole stack; more than two at once overloads a two-core machine.
    maxWorkers: 2,
    // Stacks start real processes, and some tests wait out real timeouts (start threshold, ...).
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
  },
});
