/** The test harness itself: fresh database and namespace per stack, readiness, stopping. */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runCommand } from '../dev/exec.js';
import { ReadinessError } from '../dev/processes.js';
import { ACTOR_SEARCH_ATTRIBUTES } from '../src/workflows/search-attributes.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';

const NO_PROCESSES = { workers: 0, gateway: false, runners: [] };

describe('test harness', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await createTestStack({ ...NO_PROCESSES, stopGraceMs: 2_000 });
  });
  afterAll(() => stack?.stop());

  it('gives a stack its own migrated database', async () => {
    expect(stack.databaseUrl).toMatch(/\/dormouse_t_[0-9a-f]{8}$/);
    const { rows } = await stack.db.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    );
    expect(rows.map((r) => r.table_name)).toEqual(
      expect.arrayContaining([
        'actors',
        'runners',
        'runner_commands',
        'gateways',
        'hibernating_requests',
        'actor_kv',
        'dormouse_migrations',
      ]),
    );
    const { rows: actors } = await stack.db.query('SELECT 1 FROM actors');
    expect(actors).toHaveLength(0);
  });

  it('gives a stack its own namespace with the search attributes registered', async () => {
    expect(stack.namespace).toMatch(/^t-[0-9a-f]{8}$/);
    const cli = inject('temporalCliPath');
    const args = [
      'operator',
      'search-attribute',
      'list',
      '--output',
      'json',
      '--namespace',
      stack.namespace,
      '--address',
      inject('temporalAddress'),
    ];
    const result = await runCommand(cli, args, { timeoutMs: 15_000 });
    expect(result.exitCode, result.stderr).toBe(0);
    const { customAttributes } = JSON.parse(result.stdout) as { customAttributes: Record<string, string> };
    for (const { name, type } of ACTOR_SEARCH_ATTRIBUTES) {
      expect(customAttributes[name], name).toBe(`INDEXED_VALUE_TYPE_${type}`);
    }
  });

  it('fails a process that never logs ready at the deadline, naming its log', async () => {
    const started = Date.now();
    const error = await stack
      // Long enough for a cold tsx compile on a loaded machine to print the fixture's first line.
      .startRunner({ name: 'never-ready', script: 'test/fixtures/never-ready.ts', readyTimeoutMs: 8_000 })
      .catch((err: unknown) => err);

    expect(error).toBeInstanceOf(ReadinessError);
    const { message, logFile } = error as ReadinessError;
    expect(message).toContain('never-ready');
    expect(message).toContain('did not log "ready" within 8000 ms');
    expect(message).toContain('starting, but never ready');
    expect(message).toContain(logFile);
    expect(readFileSync(logFile, 'utf8')).toContain('starting, but never ready');
    // The deadline, plus the stop grace for the process that did not become ready.
    expect(Date.now() - started).toBeLessThan(8_000 + 2_000 + 3_000);
    expect(stack.runners).toHaveLength(0);
  });

  it('reports a process that exits before it is ready, with its exit code and output', async () => {
    const error = await stack
      .startRunner({ name: 'exits-early', script: 'test/fixtures/exits-early.ts' })
      .catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ReadinessError);
    expect((error as Error).message).toContain('exited before it was ready (exit code 3)');
    expect((error as Error).message).toContain('cannot start: fixture failure');
  });

  it('restarts a process as a new one', async () => {
    const proc = await stack.startRunner({ name: 'restartable', script: 'test/fixtures/ready.ts' });
    const firstPid = proc.pid;
    const firstExit = proc.exited;
    await proc.restart();
    expect(await firstExit).toEqual({ code: 0, signal: null });
    expect(proc.pid).not.toBe(firstPid);
    expect(isAlive(proc.pid)).toBe(true);
  });

  it('stop() kills every process, also one that ignores SIGTERM, and drops the database', async () => {
    const other = await createTestStack({
      ...NO_PROCESSES,
      runners: [{ script: 'test/fixtures/ready.ts' }, { script: 'test/fixtures/stubborn.ts' }],
      stopGraceMs: 1_000,
    });
    const pids = other.runners.map((p) => p.pid);
    expect(pids.every(isAlive)).toBe(true);

    await other.stop();

    expect(pids.filter(isAlive)).toEqual([]);
    const { rows } = await stack.db.query('SELECT 1 FROM pg_database WHERE datname = $1', [
      new URL(other.databaseUrl).pathname.slice(1),
    ]);
    expect(rows).toHaveLength(0);
  });
});

describe('a child of a process that dies', () => {
  for (const mode of ['exit', 'hang'] as const) {
    it(mode === 'exit' ? 'is killed when its parent exits' : 'stops itself when its parent is SIGKILLed', async () => {
      const logFile = join(inject('logDir'), `orphan-${mode}-${process.pid}.log`);
      const parent = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/parent.ts', mode, logFile], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const lines: string[] = [];
      createInterface({ input: parent.stdout }).on('line', (line) => lines.push(line));
      try {
        const childPid = await waitFor(() => lines.map(parseChildPid).find((pid) => pid !== undefined), {
          timeoutMs: 30_000,
          message: 'the parent fixture to start its child',
        });
        if (mode === 'hang') parent.kill('SIGKILL');
        await waitFor(() => !isAlive(childPid), {
          timeoutMs: 15_000,
          message: `child ${childPid} to die with its parent`,
        });
      } finally {
        parent.kill('SIGKILL');
      }
      expect(existsSync(logFile)).toBe(true);
    });
  }
});

function parseChildPid(line: string): number | undefined {
  try {
    return (JSON.parse(line) as { childPid?: number }).childPid;
  } catch {
    return undefined;
  }
}

/** A zombie (exited, not yet reaped by whoever inherited it) counts as dead. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
