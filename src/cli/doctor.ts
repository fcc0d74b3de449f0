/**
 * `dormouse doctor`: is this installation ready to run actors? Temporal and Postgres reachable,
 * the schema current, the search attributes registered, runners connected, and NATS reachable
 * when DORMOUSE_NATS_URL is set (several gateways, DESIGN §2.1). Each check prints ✓
 * or ✗ with the reason (or - when what it needs failed); the exit code is 1 unless all passed.
 * Every wait is bounded, so a server that does not answer fails its check instead of hanging.
 */
import { readdir } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { connect as connectNats } from '@nats-io/transport-node';
import { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import pg from 'pg';
import { loadConfig, type Config } from '../config.js';
import { MIGRATIONS_DIR, MIGRATIONS_TABLE } from '../db/migrate.js';
import { errorMessage } from '../errors.js';
import { ACTOR_SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';
import { printJson } from './output.js';

// A CommonJS package: its namespaces are properties of the default export.
const { IndexedValueType } = proto.temporal.api.enums.v1;

/** Bound on each connection and each call. */
const TIMEOUT_MS = 5_000;

const CHECKS = {
  temporal: 'Temporal reachable',
  postgres: 'Postgres reachable',
  schema: 'schema current',
  searchAttributes: 'search attributes registered',
  runners: 'runners connected',
  nats: 'NATS reachable',
} as const;
type CheckName = keyof typeof CHECKS;

type CheckStatus = 'ok' | 'failed' | 'skipped';

interface CheckResult {
  name: CheckName;
  title: string;
  status: CheckStatus;
  detail: string;
}

interface DoctorReport {
  ok: boolean;
  checks: CheckResult[];
}

const SYMBOLS: Record<CheckStatus, string> = { ok: '✓', failed: '✗', skipped: '-' };

/** The `doctor` command: prints the report (a table, or JSON) and resolves with the exit code. */
export async function doctor(options: { json?: boolean }): Promise<number> {
  const report = await diagnose(loadConfig());
  if (options.json) printJson(report);
  else process.stdout.write(formatReport(report));
  return report.ok ? 0 : 1;
}

/** Runs every check; the Temporal ones, the Postgres ones and NATS in parallel. */
async function diagnose(config: Config): Promise<DoctorReport> {
  const results = (await Promise.all([temporalChecks(config), postgresChecks(config), natsChecks(config)])).flat();
  const order = Object.keys(CHECKS);
  const checks = results.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  return { ok: checks.every((c) => c.status === 'ok'), checks };
}

function formatReport(report: DoctorReport): string {
  const width = Math.max(...report.checks.map((c) => c.title.length));
  return report.checks.map((c) => `${SYMBOLS[c.status]} ${c.title.padEnd(width)}  ${c.detail}\n`).join('');
}

function result(name: CheckName, status: CheckStatus, detail: string): CheckResult {
  return { name, title: CHECKS[name], status, detail };
}

function deadline(): number {
  return Date.now() + TIMEOUT_MS;
}

// --- Temporal ---------------------------------------------------------------------------------

async function temporalChecks(config: Config): Promise<CheckResult[]> {
  const { address, namespace } = config.temporal;
  let connection: Connection;
  try {
    connection = await Connection.connect({ address, connectTimeout: TIMEOUT_MS });
  } catch (err) {
    return [
      result('temporal', 'failed', `cannot connect to ${address}: ${errorMessage(err)}`),
      result('searchAttributes', 'skipped', 'needs Temporal'),
    ];
  }
  try {
    try {
      await connection.withDeadline(deadline(), () => connection.workflowService.describeNamespace({ namespace }));
    } catch (err) {
      return [
        result('temporal', 'failed', `${address} is up, but namespace ${namespace}: ${errorMessage(err)}`),
        result('searchAttributes', 'skipped', 'needs the namespace'),
      ];
    }
    return [
      result('temporal', 'ok', `${address}, namespace ${namespace}`),
      await searchAttributesCheck(connection, namespace),
    ];
  } finally {
    await connection.close();
  }
}

async function searchAttributesCheck(connection: Connection, namespace: string): Promise<CheckResult> {
  let registered: Record<string, number>;
  try {
    const response = await connection.withDeadline(deadline(), () =>
      connection.operatorService.listSearchAttributes({ namespace }),
    );
    registered = response.customAttributes ?? {};
  } catch (err) {
    return result('searchAttributes', 'failed', `cannot list them: ${errorMessage(err)}`);
  }
  const problems = ACTOR_SEARCH_ATTRIBUTES.flatMap(({ name, type }) => {
    const found = registered[name];
    if (found === undefined) return [`${name} is missing`];
    const foundType = (IndexedValueType[found] ?? String(found)).replace(/^INDEXED_VALUE_TYPE_/, '');
    return foundType === type ? [] : [`${name} is ${foundType}, needs ${type}`];
  });
  if (problems.length > 0)
    return result(
      'searchAttributes',
      'failed',
      `${problems.join('; ')} (register them with \`temporal operator search-attribute create\`)`,
    );
  return result(
    'searchAttributes',
    'ok',
    ACTOR_SEARCH_ATTRIBUTES.map(({ name, type }) => `${name} (${type})`).join(', '),
  );
}

// --- NATS -------------------------------------------------------------------------------------

/** Only with DORMOUSE_NATS_URL: one gateway needs no NATS. Connects (bounded), then closes. */
async function natsChecks(config: Config): Promise<CheckResult[]> {
  const servers = config.gateway.natsServers;
  if (servers === undefined) return [];
  const where = servers.join(',');
  try {
    const connection = await connectNats({
      servers,
      name: 'dormouse-doctor',
      timeout: TIMEOUT_MS,
      reconnect: false,
      ignoreClusterUpdates: true,
    });
    const version = connection.info?.version;
    const server = connection.getServer();
    await connection.close();
    return [result('nats', 'ok', `${server}${version ? `, nats-server ${version}` : ''}`)];
  } catch (err) {
    return [result('nats', 'failed', `cannot connect to ${where}: ${errorMessage(err)} (is nats-server running?)`)];
  }
}

// --- Postgres ---------------------------------------------------------------------------------

async function postgresChecks(config: Config): Promise<CheckResult[]> {
  const needsPostgres = [result('schema', 'skipped', 'needs Postgres'), result('runners', 'skipped', 'needs Postgres')];
  if (!config.databaseUrl) return [result('postgres', 'failed', 'DATABASE_URL is not set'), ...needsPostgres];
  const client = new pg.Client({
    connectionString: config.databaseUrl,
    application_name: 'dormouse-doctor',
    connectionTimeoutMillis: TIMEOUT_MS,
    query_timeout: TIMEOUT_MS,
  });
  // A connection the server drops is reported by the query it fails; unhandled, it would crash.
  client.on('error', () => undefined);
  let server: { database: string; version: string };
  try {
    await client.connect();
    const { rows } = await client.query<{ database: string; version: string }>(
      "SELECT current_database() AS database, current_setting('server_version') AS version",
    );
    server = rows[0]!;
  } catch (err) {
    await client.end().catch(() => undefined);
    return [result('postgres', 'failed', errorMessage(err)), ...needsPostgres];
  }
  try {
    return [
      result('postgres', 'ok', `database ${server.database} on PostgreSQL ${server.version}`),
      await schemaCheck(client),
      await runnersCheck(client, config),
    ];
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Current when every migration file in MIGRATIONS_DIR is recorded as applied. */
async function schemaCheck(client: pg.Client): Promise<CheckResult> {
  const applyHint = 'workers and gateways apply migrations at start-up';
  try {
    const migrations = (await readdir(MIGRATIONS_DIR)).map((file) => basename(file, extname(file))).sort();
    const table = await client.query<{ found: string | null }>('SELECT to_regclass($1)::text AS found', [
      MIGRATIONS_TABLE,
    ]);
    if (table.rows[0]?.found == null)
      return result('schema', 'failed', `not migrated: no ${MIGRATIONS_TABLE} table (${applyHint})`);
    const { rows } = await client.query<{ name: string }>(
      `SELECT name FROM ${client.escapeIdentifier(MIGRATIONS_TABLE)}`,
    );
    const applied = new Set(rows.map((r) => r.name));
    const pending = migrations.filter((m) => !applied.has(m));
    if (pending.length > 0) return result('schema', 'failed', `not applied: ${pending.join(', ')} (${applyHint})`);
    return result('schema', 'ok', `every migration applied (${migrations.length})`);
  } catch (err) {
    return result('schema', 'failed', errorMessage(err));
  }
}

/**
 * Connected: held by a gateway, not declared lost, and pinged within the lost threshold (the
 * database clock decides, as everywhere else).
 */
async function runnersCheck(client: pg.Client, config: Config): Promise<CheckResult> {
  const lostMs = config.timing.runnerLostMs;
  try {
    const { rows } = await client.query<{ live: number; held: number }>(
      `SELECT count(*) FILTER (WHERE last_ping_at > now() - make_interval(secs => $1::double precision / 1000))::int AS live,
              count(*)::int AS held
       FROM runners WHERE gateway_id IS NOT NULL AND lost_at IS NULL`,
      [lostMs],
    );
    const { live, held } = rows[0]!;
    if (live > 0) return result('runners', 'ok', `${live} connected`);
    if (held > 0)
      return result(
        'runners',
        'failed',
        `${held} held by a gateway but none pinged in the last ${lostMs / 1000} s: is the gateway running?`,
      );
    return result('runners', 'failed', 'none connected: start a runner (examples/runner.ts is one)');
  } catch (err) {
    return result('runners', 'failed', errorMessage(err));
  }
}
