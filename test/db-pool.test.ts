/**
 * The shared Postgres pool (src/db/pool.ts) survives its server dropping connections, idle or
 * checked out in a transaction, as a Postgres restart does: found by the chaos run
 * (bench/chaos.ts, postgres_restart), where the gateway and a worker died of unhandled 'error'
 * events of the pool and of a checked-out client.
 */
import type { Socket } from 'node:net';
import pg from 'pg';
import { afterAll, expect, inject, it } from 'vitest';
import { createPool, inTransaction, type Db } from '../src/db/pool.js';
import { waitFor } from './harness/wait.js';

const APPLICATION_NAME = 'dormouse-test-pool-error';
let pool: Db | undefined;
afterAll(() => pool?.end());

it('an idle connection terminated by the server is dropped, and the pool serves the next query', async () => {
  const warnings: string[] = [];
  const log = { warn: (_obj: unknown, msg: string) => warnings.push(msg) } as never;
  pool = createPool(inject('adminDatabaseUrl'), { max: 2, applicationName: APPLICATION_NAME, log });
  // Two idle clients in the pool.
  await Promise.all([pool.query('SELECT pg_sleep(0.05)'), pool.query('SELECT pg_sleep(0.05)')]);
  expect(pool.idleCount).toBe(2);

  expect(await terminateBackends('application_name = $1', [APPLICATION_NAME])).toBe(2);

  // Unhandled, the first of these 'error' events would have failed this test run's process.
  await waitFor(() => pool!.idleCount === 0, { timeoutMs: 10_000, message: 'the dead clients to be dropped' });
  expect(warnings).toContain('an idle Postgres connection failed');
  const { rows } = await pool.query<{ one: number }>('SELECT 1 AS one');
  expect(rows).toEqual([{ one: 1 }]);
});

it('a connection terminated between two queries of a transaction fails the transaction, not the process', async () => {
  const db = createPool(inject('adminDatabaseUrl'), { max: 1, applicationName: `${APPLICATION_NAME}-tx` });
  try {
    const failed = inTransaction(db, async (client) => {
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await terminateBackends('pid = $1', [rows[0]!.pid]);
      // No query runs while the server closes the connection: pg emits 'error' on the client.
      const socket = (client as unknown as { connection: { stream: Socket } }).connection.stream;
      await waitFor(() => socket.destroyed, { timeoutMs: 10_000, message: 'the connection to close' });
      await client.query('SELECT 1');
    });
    await expect(failed).rejects.toThrow();
    const { rows } = await db.query<{ one: number }>('SELECT 1 AS one');
    expect(rows).toEqual([{ one: 1 }]);
  } finally {
    await db.end();
  }
});

async function terminateBackends(where: string, params: unknown[]): Promise<number | null> {
  const admin = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
  await admin.connect();
  try {
    const { rowCount } = await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE ${where}`,
      params,
    );
    return rowCount;
  } finally {
    await admin.end();
  }
}
