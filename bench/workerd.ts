/**
 * Cloudflare's own runtime as a baseline (issue 11): `workerd` from npm (a dev dependency) running
 * the chat room of bench/workerd/ as a Durable Object on the WebSocket Hibernation API, on
 * 127.0.0.1, and the measurements the benchmarks compare Dormouse with: a never-used object's
 * first reply, and a hibernated object's wake. Each is measured against the same Worker answering
 * without an object, interleaved in the same run.
 *
 * Hibernation is real, not assumed: workerd evicts an object after 10 s without events (its
 * default; the config does not set preventEviction) and keeps its hibernatable sockets; the next
 * message rebuilds it, which reloads `seq` from storage. The Worker counts constructions per
 * object in module state, which eviction keeps, so every wake sample is checked to have rebuilt
 * its object; a sample that did not fails the measurement.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { pino } from 'pino';
import WebSocket from 'ws';
import { freePort } from '../dev/free-port.js';
import { startServerProcess } from '../dev/server-process.js';
import { allSettledOrThrow, within } from '../dev/wait.js';
import { wsText } from '../src/util/ws-data.js';
import { measureInterleaved, type BenchContext, type Samples } from './benchmark.js';

const HOST = '127.0.0.1';
const CONFIG_PATH = fileURLToPath(new URL('./workerd/config.capnp', import.meta.url));
const READY_TIMEOUT_MS = 15_000;
/** Bound on one readiness probe, and on any one request or message of a measurement. */
const PROBE_TIMEOUT_MS = 1_000;
const STEP_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;
/**
 * How long the rooms are left alone before their wakes are timed: workerd evicts an object after
 * 10 s without events (observed: 9 s idle still warm, 10 s rebuilt); 2 s more for its check to
 * come round. Eviction cannot be observed without an event that would cancel it, so this is a
 * wait on the clock, checked afterwards per sample (the construction count).
 */
export const WORKERD_EVICTION_WAIT_MS = 12_000;
/** Rooms opened at once while preparing a wake measurement. */
const OPEN_CONCURRENCY = 20;

/** The native binary: the `workerd` package resolves its platform package's executable. */
export function workerdBinary(): string {
  const require = createRequire(import.meta.url);
  return (require('workerd') as { default: string }).default;
}

export interface StartWorkerdOptions {
  /** Receives workerd's own output lines (its errors, the Worker's console). */
  log?: (line: string) => void;
}

export interface Workerd {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  pid: number;
  /** SIGTERM, SIGKILL if it lingers; resolves once it has exited and its storage is gone. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts `workerd serve bench/workerd/config.capnp` on a free port of 127.0.0.1, with the objects'
 * storage on disk in a temporary folder (deleted by stop), and resolves once it answers; one that
 * fails to start is stopped and reported with its last output lines.
 */
export async function startWorkerd(options: StartWorkerdOptions = {}): Promise<Workerd> {
  const binary = workerdBinary();
  const port = await freePort();
  const url = `http://${HOST}:${port}`;
  const storageDir = await mkdtemp(join(tmpdir(), 'dormouse-workerd-'));
  const args = [
    'serve',
    CONFIG_PATH,
    '--socket-addr',
    `http=${HOST}:${port}`,
    '--directory-path',
    `do-storage=${storageDir}`,
  ];

  const server = await startServerProcess({
    name: `workerd on ${url}`,
    command: binary,
    args,
    ready: async () => {
      const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
      return response.ok && ((await response.json()) as { ok?: unknown }).ok === true;
    },
    readyTimeoutMs: READY_TIMEOUT_MS,
    readyIntervalMs: 50,
    stopGraceMs: STOP_GRACE_MS,
    ...(options.log ? { log: options.log } : {}),
  }).catch(async (err: unknown) => {
    await rm(storageDir, { recursive: true, force: true });
    throw err;
  });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= server.stop().finally(() => rm(storageDir, { recursive: true, force: true })));
  return { url, pid: server.pid, stop };
}

/** Runs `body` with a workerd of its own (its output in the debug log), stopped afterwards whatever happens. */
export async function withWorkerd<T>(context: BenchContext, body: (url: string) => Promise<T>): Promise<T> {
  const { log } = context;
  const workerd = await startWorkerd({ log: (line) => log.debug({ workerd: line }, 'workerd output') });
  log.info({ url: workerd.url, pid: workerd.pid }, 'workerd ready');
  try {
    return await body(workerd.url);
  } finally {
    await workerd.stop();
  }
}

export interface MeasureOptions extends Partial<BenchContext> {
  /** Iterations run first and not counted (default 5). */
  warmup?: number;
}

/** What a chat room broadcasts, and what the bare Worker's socket answers. */
export interface ChatReply {
  seq: number;
  from: string;
  text: string;
}

/**
 * A never-used object's first reply: `GET /rooms/<fresh name>/state` until its answer, against
 * `GET /plain/state` answered by the Worker alone; `n` of each, interleaved.
 */
export async function measureDoColdStart(url: string, n: number, options: MeasureOptions = {}): Promise<Samples> {
  const context = contextOf(options);
  const runId = randomBytes(4).toString('hex');
  return measureInterleaved(
    async (i) => {
      const state = await getJson<{ seq: number; connections: number }>(`${url}/rooms/cold-${runId}-${i}/state`);
      if (state.seq !== 0 || state.connections !== 0) throw new Error(`a fresh room answered ${JSON.stringify(state)}`);
    },
    async () => {
      await getJson(`${url}/plain/state`);
    },
    { n, warmup: options.warmup ?? 5 },
    context,
  );
}

/**
 * A message to a hibernated object until its broadcast comes back, against the same message to
 * the Worker's own (not hibernatable) socket; `n` of each, interleaved. Opens one room per sample
 * with one socket, sends it a first message, leaves them all idle for WORKERD_EVICTION_WAIT_MS,
 * then wakes them one after another; fails unless every room's object was rebuilt by its wake.
 */
export async function measureDoWake(url: string, n: number, options: MeasureOptions = {}): Promise<Samples> {
  const context = contextOf(options);
  const warmup = options.warmup ?? 5;
  const runId = randomBytes(4).toString('hex');
  const names = Array.from({ length: warmup + n }, (_, i) => `wake-${runId}-${i}`);
  const rooms = new Map<string, WebSocket>();
  const plain = await openSocket(`${url}/plain/ws?name=bench`);
  try {
    for (let i = 0; i < names.length; i += OPEN_CONCURRENCY) {
      context.signal.throwIfAborted();
      // Settled, all of them, before going on: a socket still opening would escape the cleanup.
      await allSettledOrThrow(
        names.slice(i, i + OPEN_CONCURRENCY).map(async (name) => {
          const ws = await openSocket(`${url}/rooms/${name}/ws?name=bench`);
          rooms.set(name, ws);
          await exchange(ws, 'hello', 1);
        }),
      );
    }
    const before = await constructionCounts(url, names);
    if (before.some((count) => count !== 1)) throw new Error(`rooms built ${before.join(',')} times, expected once`);
    context.log.info(
      { rooms: names.length, idleMs: WORKERD_EVICTION_WAIT_MS },
      'rooms open; leaving them idle to hibernate',
    );
    // See WORKERD_EVICTION_WAIT_MS: the condition is checked per room below.
    await delay(WORKERD_EVICTION_WAIT_MS, undefined, { signal: context.signal });

    let plainSeq = 0;
    const samples = await measureInterleaved(
      async (i) => {
        await exchange(rooms.get(names[i]!)!, `wake ${i}`, 2);
      },
      async (i) => {
        await exchange(plain, `plain ${i}`, ++plainSeq);
      },
      { n, warmup },
      context,
    );
    const after = await constructionCounts(url, names);
    const warm = after.filter((count) => count !== 2).length;
    if (warm > 0) {
      throw new Error(
        `${warm} of ${names.length} wakes did not rebuild their object (construction counts ${after.join(',')}): they were not hibernated`,
      );
    }
    context.log.info({ rebuilt: names.length }, 'every wake rebuilt its object');
    // For the diagnostics: the same message to the same objects, now in memory, shows how much of
    // a wake is the rebuild and how much the write every message makes.
    const warmMs: number[] = [];
    for (const [i, name] of names.entries()) {
      const start = performance.now();
      await exchange(rooms.get(name)!, `warm ${i}`, 3);
      warmMs.push(performance.now() - start);
    }
    warmMs.sort((a, b) => a - b);
    context.log.info(
      { warmMedianMs: Math.round(warmMs[Math.floor(warmMs.length / 2)]! * 10) / 10 },
      'the same rooms in memory (not a figure)',
    );
    return samples;
  } finally {
    await closeSockets([plain, ...rooms.values()]);
  }
}

/**
 * Closes the sockets and waits (bounded) for their close handshakes; those still open then are
 * dropped. workerd drains open connections on SIGTERM, so a socket left open delays its stop.
 */
export async function closeSockets(sockets: readonly WebSocket[]): Promise<void> {
  const closed = sockets.map((ws) =>
    ws.readyState === WebSocket.CLOSED
      ? Promise.resolve()
      : new Promise<void>((resolve) => ws.once('close', () => resolve())),
  );
  for (const ws of sockets) ws.close(1000);
  await within(Promise.all(closed), STEP_TIMEOUT_MS);
  for (const ws of sockets) ws.terminate();
}

async function constructionCounts(url: string, names: string[]): Promise<number[]> {
  const counts: number[] = [];
  for (const name of names)
    counts.push((await getJson<{ constructed: number }>(`${url}/rooms/${name}/constructed`)).constructed);
  return counts;
}

function contextOf(options: MeasureOptions): BenchContext {
  return { log: options.log ?? pino({ level: 'silent' }), signal: options.signal ?? new AbortController().signal };
}

async function getJson<T = unknown>(url: string): Promise<T> {
  const response = await fetch(url, { signal: AbortSignal.timeout(STEP_TIMEOUT_MS) });
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as T;
}

/** Opens a WebSocket, bounded. */
export function openSocket(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url.replace(/^http/, 'ws'));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`${url} did not open within ${STEP_TIMEOUT_MS} ms`));
    }, STEP_TIMEOUT_MS);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve(ws);
    });
    ws.once('unexpected-response', (_request, response) => {
      clearTimeout(timer);
      reject(new Error(`${url}: upgrade refused with ${response.statusCode}`));
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * Sends `text` and resolves with the next message, which must be its broadcast with `seq` (the
 * socket is the only one of its room, so nothing else arrives on it).
 */
export function exchange(ws: WebSocket, text: string, seq: number): Promise<ChatReply> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.off('message', onMessage);
      reject(new Error(`no broadcast of "${text}" within ${STEP_TIMEOUT_MS} ms`));
    }, STEP_TIMEOUT_MS);
    const onMessage = (data: WebSocket.RawData): void => {
      clearTimeout(timer);
      const reply = JSON.parse(wsText(data)) as ChatReply;
      if (reply.text === text && reply.seq === seq) resolve(reply);
      else reject(new Error(`expected the broadcast of "${text}" with seq ${seq}, got ${JSON.stringify(reply)}`));
    };
    ws.once('message', onMessage);
    ws.send(text);
  });
}
