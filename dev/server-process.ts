/**
 * A server the stack runs as a plain child (the Temporal dev server, nats-server, workerd): spawned
 * in its own process group, so that a terminal's Ctrl-C reaches only its parent, which stops it
 * after what uses it; its output kept (the last lines, to report a failed start); ready once its
 * own probe says so; stopped with SIGTERM, then SIGKILL, each bounded.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { describeExit, killOnExit, signalProcess, type ProcessExit } from './processes.js';
import { waitFor, within } from './wait.js';

const KILL_WAIT_MS = 5_000;
const TAIL_LINES = 30;

export interface ServerProcessOptions {
  /** How it is named in errors, e.g. `nats-server`. */
  name: string;
  command: string;
  args: string[];
  /** Resolves true once the server serves (polled until `readyTimeoutMs`; a throw counts as not yet). */
  ready: () => Promise<boolean>;
  readyTimeoutMs: number;
  readyIntervalMs: number;
  /** Between SIGTERM and SIGKILL on stop. */
  stopGraceMs: number;
  /** Receives each output line. */
  log?: (line: string) => void;
  /** Also appends the output there (created with its folder), across restarts. */
  logFile?: string;
}

export interface ServerProcess {
  pid: number;
  /** SIGTERM, SIGKILL past the grace; resolves once it has exited. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL at once (a crash, for fault tests); resolves once it has exited. */
  kill(): Promise<void>;
}

/** Starts it and resolves once it is ready; one that dies or is not ready in time is stopped and reported with its last lines. */
export async function startServerProcess(options: ServerProcessOptions): Promise<ServerProcess> {
  const { name, command, args } = options;
  const fd =
    options.logFile === undefined ? undefined : openLog(options.logFile, `starting ${command} ${args.join(' ')}`);
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  killOnExit(child, true);
  const tail: string[] = [];
  const record = (line: string): void => {
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
    if (fd !== undefined) writeSync(fd, `${line}\n`);
    options.log?.(line);
  };
  const streamsDone = [child.stdout, child.stderr].map((stream) => {
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    lines.on('line', record);
    return new Promise<void>((resolve) => lines.once('close', resolve));
  });
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    // Spawning failed (bad command); later errors (a failed kill) must not go unhandled either.
    child.on('error', (err) => {
      record(`spawn failed: ${err.message}`);
      resolve({ code: null, signal: null });
    });
  });
  void Promise.all([exited, ...streamsDone]).then(() => {
    if (fd !== undefined) closeSync(fd);
  });

  const terminate = async (graceMs: number): Promise<void> => {
    if (child.pid === undefined) return;
    if (graceMs > 0) {
      signalProcess(child.pid, 'SIGTERM', true);
      if (await within(exited, graceMs)) return;
    }
    signalProcess(child.pid, 'SIGKILL', true);
    if (!(await within(exited, KILL_WAIT_MS))) throw new Error(`${name} (pid ${child.pid}) did not exit after SIGKILL`);
  };
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= terminate(options.stopGraceMs));
  const kill = (): Promise<void> => (stopping ??= terminate(0));

  // A server that dies while starting fails the wait at once instead of at the deadline.
  const died = new AbortController();
  void exited.then((exit) =>
    died.abort(new Error(`${name} exited while starting (${describeExit(exit)}):\n${tail.join('\n')}`)),
  );
  try {
    await waitFor(options.ready, {
      timeoutMs: options.readyTimeoutMs,
      intervalMs: options.readyIntervalMs,
      message: `${name} (\`${command} ${args.join(' ')}\`) to serve`,
      signal: died.signal,
    });
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return { pid: child.pid!, stop, kill };
}

function openLog(file: string, header: string): number {
  mkdirSync(dirname(file), { recursive: true });
  const fd = openSync(file, 'a');
  writeSync(fd, `--- ${new Date().toISOString()} ${header}\n`);
  return fd;
}
