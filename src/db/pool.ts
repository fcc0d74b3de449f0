/** The Postgres pool every process shares, and the transaction helper. */
import pg from 'pg';
import type { Logger } from '../log.js';

export type Db = pg.Pool;
export type DbClient = pg.PoolClient;
/** Anything that can run a query: the pool or a client inside a transaction. */
export type Queryable = Pick<pg.Pool, 'query'>;

export function createPool(
  databaseUrl: string,
  options: { max?: number; applicationName?: string; log?: Logger } = {},
): Db {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'dormouse',
    // A dead server must fail a query, not hang it.
    connectionTimeoutMillis: 10_000,
  });
  // An idle client whose connection dies (Postgres restarted, the backend terminated) is emitted
  // here; unhandled, that 'error' event would kill the process. The pool has already dropped the
  // client and connects anew on the next query.
  pool.on('error', (err) => options.log?.warn({ err: err.message }, 'an idle Postgres connection failed'));
  return pool;
}

/** Runs `fn` in a transaction on one client, committing on success and rolling back on error. */
export async function inTransaction<T>(db: Db, fn: (client: DbClient) => Promise<T>): Promise<T> {
  const client = await db.connect();
  // A checked-out client has no pool listener: a connection that dies between two queries emits
  // 'error' here, which unhandled would kill the process. The next query fails instead, and the
  // dead client is destroyed on release rather than returned to the pool.
  let lost: Error | undefined;
  const onError = (err: Error): void => void (lost = err);
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.removeListener('error', onError);
    client.release(lost);
  }
}
