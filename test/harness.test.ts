/** The test harness itself: fresh database and namespace per stack, readiness, stopping, NATS. */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import { createInterface } from 'node:readline';
import { connect, type NatsConnection } from '@nats-io/transport-node';
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

describe('a stack with nats: true', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await createTestStack({ ...NO_PROCESSES, nats: true, runners: [{ script: 'test/fixtures/ready.ts' }] });
  });
  afterAll(() => stack?.stop());

  it('runs a NATS server of its own and gives every process its URL', async () => {
    const nats = stack.nats!;
    expect(nats.url).toBe(`nats://127.0.0.1:${nats.port}`);
    expect(nats.running).toBe(true);
    expect(processEnv(stack.runners[0]!.pid).DORMOUSE_NATS_URL).toBe(nats.url);
    const client = await connect({ servers: nats.url, timeout: 5_000 });
    try {
      expect(await roundTrip(client, 'harness.hello')).toBe('harness.hello');
    } finally {
      await client.close();
    }
  });

  it('stops, kills and starts it again on the same URL, where a client reconnects', async () => {
    const nats = stack.nats!;
    const client = await connect({
      servers: nats.url,
      timeout: 5_000,
      reconnectTimeWait: 100,
      maxReconnectAttempts: -1,
    });
    try {
      for (const down of ['kill', 'stop'] as const) {
        await nats[down]();
        expect(nats.running).toBe(false);
        expect(await accepts(nats.port), `port ${nats.port} after ${down}`).toBe(false);
        await nats.start();
        expect(nats.running).toBe(true);
        expect(await roundTrip(client, `harness.after-${down}`)).toBe(`harness.after-${down}`);
      }
      await expect(nats.start()).rejects.toThrow(/already runs/);
      await nats.restart();
      expect(await roundTrip(client, 'harness.after-restart')).toBe('harness.after-restart');
    } finally {
      await client.close();
    }
  });

  it('stop() stops the NATS server', async () => {
    const other = await createTestStack({ ...NO_PROCESSES, nats: true });
    const { port } = other.nats!;
    expect(await accepts(port)).toBe(true);
    await other.stop();
    expect(await accepts(port)).toBe(false);
    const plain = await createTestStack(NO_PROCESSES);
    await plain.stop();
    expect(plain.nats).toBeUndefined();
  });
});

/** Publishes `subject` on a subscription to it (retried while the client reconnects); resolves with what arrived. */
async function roundTrip(client: NatsConnection, subject: string): Promise<string> {
  return waitFor(
    async () => {
      const sub = client.subscribe(subject, { max: 1, timeout: 1_000 });
      client.publish(subject, subject);
      for await (const msg of sub) return msg.string();
      return undefined;
    },
    { timeoutMs: 15_000, intervalMs: 100, message: `a message on ${subject} to come back` },
  );
}

/** Whether something accepts TCP connections on 127.0.0.1:`port` (bounded). */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 2_000);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** The environment a process was started with (Linux). */
function processEnv(pid: number): Record<string, string> {
  return Object.fromEntries(
    readFileSync(`/proc/${pid}/environ`, 'utf8')
      .split('\0')
      .filter(Boolean)
      .map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]),
  );
}

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
