/**
 * Spawning, watching and stopping the Node processes of a Dormouse stack (workers, gateways,
 * runners), shared by the local stack (dev/local-stack.ts: `npm start`, the benchmarks) and
 * the tests (test/harness/stack.ts).
 *
 * Readiness contract: a process writes pino JSON lines to stdout and logs exactly one line with
 * `"msg":"ready"` once it serves. Every line a process writes goes to its log file, which is
 * named in every error about that process: the log file is how a failed start is debugged.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { within } from './wait.js';

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface NodeProcessOptions {
  /** Shown in logs and errors, e.g. `worker-1`. */
  name: string;
  /** Absolute path of the TypeScript entry file, run with tsx. */
  script: string;
  /** Added to (and overriding) this process's environment. */
  env: Record<string, string>;
  /** Receives everything the process writes, appended across restarts. */
  logFile: string;
  /** How long to wait for the `ready` line (default 30 s). */
  readyTimeoutMs?: number;
  /** How long `stop()` waits after SIGTERM before SIGKILL (default 10 s). */
  stopGraceMs?: number;
  /**
   * Run in its own process group. The dev stack sets it so that Ctrl-C in the terminal reaches
   * only the dev stack, which then stops its children in order; tests leave the children in the
   * test's group so that they share its fate.
   */
  detached?: boolean;
  /** Sees each line as it arrives (the dev stack prints them with a prefix). */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

/** A process did not log `ready`: it exited first, or the deadline passed. */
export class ReadinessError extends Error {
  override name = 'ReadinessError';
  constructor(
    message: string,
    readonly processName: string,
    readonly logFile: string,
  ) {
    super(message);
  }
}

const DEFAULT_READY_TIMEOUT_MS = 30_000;
const DEFAULT_STOP_GRACE_MS = 10_000;
/** After SIGKILL the kernel reaps at once; this only bounds the wait for the event. */
const KILL_WAIT_MS = 5_000;
const TAIL_LINES = 40;

const require = createRequire(import.meta.url);
const TSX_LOADER = pathToFileURL(require.resolve('tsx')).href;
const ORPHAN_GUARD = new URL('./orphan-guard.mjs', import.meta.url).href;

/** Spawns `script` and resolves once it has logged `ready`; on failure nothing is left running. */
export function startNodeProcess(options: NodeProcessOptions): Promise<NodeProcess> {
  return NodeProcess.start(options);
}

/** One running incarnation of a child: `restart()` replaces it, so pid and exit are per run. */
interface Incarnation {
  child: ChildProcess;
  exited: Promise<ProcessExit>;
  /** All output read and the log file closed. */
  closed: Promise<void>;
  ready: Promise<void>;
}

export class NodeProcess {
  readonly name: string;
  readonly logFile: string;
  private current: Incarnation | undefined;
  private readonly tail: string[] = [];

  private constructor(private readonly options: NodeProcessOptions) {
    this.name = options.name;
    this.logFile = options.logFile;
  }

  static async start(options: NodeProcessOptions): Promise<NodeProcess> {
    const proc = new NodeProcess(options);
    await proc.launch();
    return proc;
  }

  get pid(): number {
    const pid = this.incarnation().child.pid;
    if (pid === undefined) throw new Error(`${this.name} has no pid (it failed to spawn)`);
    return pid;
  }

  /** Resolves when the current incarnation exits (never rejects). */
  get exited(): Promise<ProcessExit> {
    return this.incarnation().exited;
  }

  /** The last lines the process wrote, for error messages. */
  recentOutput(): string {
    return this.tail.join('\n');
  }

  /** Sends a signal (to the whole group when detached); a process that is gone is ignored. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    const { child } = this.incarnation();
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    signalProcess(child.pid, signal, this.options.detached === true);
  }

  /** SIGTERM, then SIGKILL if it has not exited within the grace period. */
  async stop(): Promise<ProcessExit> {
    const { exited } = this.incarnation();
    this.kill('SIGTERM');
    const graceful = await within(exited, this.options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS);
    if (graceful) return graceful;
    this.kill('SIGKILL');
    const killed = await within(exited, KILL_WAIT_MS);
    if (!killed) throw new Error(`${this.name} (pid ${this.pid}) did not exit after SIGKILL`);
    return killed;
  }

  /** Stops the process (if it still runs) and starts it again; resolves once it is ready. */
  async restart(): Promise<void> {
    await this.stop();
    await within(this.incarnation().closed, KILL_WAIT_MS);
    await this.launch();
  }

  /** Spawns a new incarnation and waits for its `ready` line; one that fails is stopped. */
  private async launch(): Promise<void> {
    const incarnation = this.spawn();
    this.current = incarnation;
    const timeoutMs = this.options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    const outcome =
      (await within(Promise.race([incarnation.ready.then(() => 'ready' as const), incarnation.exited]), timeoutMs)) ??
      'timeout';
    if (outcome === 'ready') return;
    // Not ready: make sure it is gone and its last words are read before reporting.
    if (outcome === 'timeout') await this.stop().catch(() => undefined);
    await within(incarnation.closed, KILL_WAIT_MS);
    const why =
      outcome === 'timeout'
        ? `did not log "ready" within ${timeoutMs} ms`
        : `exited before it was ready (${describeExit(outcome)})`;
    throw new ReadinessError(
      `${this.name} (${this.options.script}) ${why}.\nFull log: ${this.logFile}\nLast lines:\n${this.recentOutput() || '(no output)'}`,
      this.name,
      this.logFile,
    );
  }

  private incarnation(): Incarnation {
    if (!this.current) throw new Error(`${this.name} was never started`);
    return this.current;
  }

  private spawn(): Incarnation {
    const { script, env, logFile, detached = false } = this.options;
    mkdirSync(dirname(logFile), { recursive: true });
    const fd = openSync(logFile, 'a');
    writeSync(fd, `--- ${new Date().toISOString()} starting ${this.name}: ${script}\n`);

    const child = spawn(process.execPath, ['--import', TSX_LOADER, '--import', ORPHAN_GUARD, script], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached,
    });
    killOnExit(child, detached);

    let markReady: () => void = () => undefined;
    const ready = new Promise<void>((resolve) => (markReady = resolve));
    const exited = new Promise<ProcessExit>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      // Spawning failed (no such executable): report it as an exit. Later errors (a failed
      // kill) must not go unhandled either; the first resolve wins.
      child.on('error', (err) => {
        this.record(fd, `spawn failed: ${err.message}`, 'stderr');
        resolve({ code: null, signal: null });
      });
    });

    const streamsDone = (['stdout', 'stderr'] as const).map((stream) => {
      const lines = createInterface({ input: child[stream], crlfDelay: Infinity });
      lines.on('line', (line) => {
        this.record(fd, line, stream);
        if (stream === 'stdout' && isReadyLine(line)) markReady();
      });
      return new Promise<void>((resolve) => lines.once('close', resolve));
    });
    const closed = Promise.all([exited, ...streamsDone]).then(() => closeSync(fd));

    return { child, exited, closed, ready };
  }

  private record(fd: number, line: string, stream: 'stdout' | 'stderr'): void {
    writeSync(fd, `${line}\n`);
    this.tail.push(line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
    this.options.onLine?.(line, stream);
  }
}

function isReadyLine(line: string): boolean {
  if (!line.startsWith('{')) return false;
  try {
    return (JSON.parse(line) as { msg?: unknown }).msg === 'ready';
  } catch {
    return false;
  }
}

export function describeExit(exit: ProcessExit): string {
  if (exit.signal) return `killed by ${exit.signal}`;
  return exit.code === null ? 'could not be spawned' : `exit code ${exit.code}`;
}

/** Signals a process, or its whole group (negative pid) when it leads one; ESRCH is fine. */
export function signalProcess(pid: number, signal: NodeJS.Signals, group: boolean): void {
  try {
    process.kill(group ? -pid : pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * Children still running when this process exits are killed on the way out, whatever made it
 * exit (a failed test run, an uncaught exception, process.exit). Only synchronous work is
 * possible in an 'exit' handler, so this can only send signals. (If this process is SIGKILLed
 * itself, the orphan guard of a Node child still stops it.)
 */
interface ExitKill {
  pid: number;
  signal: NodeJS.Signals;
  group: boolean;
}
const exitKills = new Set<ExitKill>();
let exitHandlerInstalled = false;

/** Sends `signal` to `pid` (its group when `group`) if this process exits first; returns the undo. */
export function signalOnExit(pid: number, signal: NodeJS.Signals, group: boolean): () => void {
  const entry: ExitKill = { pid, signal, group };
  exitKills.add(entry);
  if (!exitHandlerInstalled) {
    exitHandlerInstalled = true;
    process.on('exit', () => {
      for (const kill of exitKills) signalProcess(kill.pid, kill.signal, kill.group);
    });
  }
  return () => exitKills.delete(entry);
}

/** SIGKILLs `child` (its group when `group`) if this process exits while it still runs. */
export function killOnExit(child: ChildProcess, group: boolean): void {
  if (child.pid === undefined) return;
  const forget = signalOnExit(child.pid, 'SIGKILL', group);
  child.once('exit', forget);
}
