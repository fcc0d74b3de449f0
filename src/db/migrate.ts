/**
 * Applies the schema migrations in `migrations/` under a Postgres advisory lock, so any number of
 * processes may call this at start-up at the same time: one migrates, the others wait for it and
 * then find nothing left to do.
 */
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import type { Logger } from '../log.js';

export const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations', import.meta.url));
export const MIGRATIONS_TABLE = 'dormouse_migrations';
/** Arbitrary, fixed: the advisory lock id that serialises Dormouse migrations. */
const MIGRATION_LOCK_ID = 0x646f726d; // "dorm"

export async function migrate(databaseUrl: string, log: Logger): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'dormouse-migrate' });
  await client.connect();
  try {
    // node-pg-migrate's own lock fails instead of waiting when taken; ours waits.
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
    const applied = await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      direction: 'up',
      migrationsTable: MIGRATIONS_TABLE,
      count: Infinity,
      noLock: true,
      log: (detail: string) => log.debug({ detail }, 'migration'),
    });
    const names = applied.map((m) => m.name);
    if (names.length > 0) log.info({ migrations: names }, 'schema migrated');
    return names;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_ID]).catch(() => undefined);
    await client.end();
  }
}
