/**
 * `gateway-sockets`: what `--sockets` hibernating WebSockets (default 10,000) cost when they are
 * spread evenly over two gateways, the room's runner on one of them; hibernating-sockets'
 * measures, on a fleet of gateways sharing a NATS:
 *
 * - Postgres writes per minute (pg_stat_user_tables) with the sockets hibernating, against the
 *   same fleet with none: the keepalive is each gateway's heartbeat, so the two should match.
 * - Gateway memory retained per hibernating socket (heap and buffers after a full GC, through the
 *   inspector), summed over both gateways, against the same number of sockets on one gateway
 *   (with its own runner, on the same bus).
 *
 * Three measured gateways with their inspectors open (bench/hibernating-sockets.ts:
 * startMeasuredGateway), fresh processes for each configuration so that neither inherits the
 * other's heap: `two-a` (with a runner of pool `gateway-sockets-two`) and `two-b` hold the
 * spread sockets, `one` (with a runner of pool `gateway-sockets-one`) the baseline's. The pools
 * pin each room to its configuration's runner. The stack's own two gateways only bring the NATS
 * and idle; every process is started before the first window, so both windows see the same
 * heartbeats. Order: writes with no sockets; the spread sockets (memory, then writes); their
 * sockets closed; the baseline's sockets (memory).
 *
 * File descriptors: the benchmark holds every client socket in this one process (and the
 * baseline's gateway as many server sockets), so it checks first that its open-file limit
 * leaves room for them. Node raises its soft limit to the hard one at start, and children
 * inherit it; if the hard limit is too low, raise it (`ulimit -Hn`, as root) and run again.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Command, OptionValues } from 'commander';
import pg from 'pg';
import type WebSocket from 'ws';
import { waitFor } from '../dev/wait.js';
import {
  positiveInt,
  quantityOf,
  withBenchStack,
  type BenchContext,
  type Benchmark,
  type Figure,
} from './benchmark.js';
import { createChat } from './cold-start.js';
import { count, openSockets, putToSleep, startMeasuredGateway, writesDuring, wsBase } from './hibernating-sockets.js';
import { retainedBytes } from './inspector.js';
import type { LocalStack } from '../dev/local-stack.js';

interface Flags extends OptionValues {
  sockets: number;
  seconds: number;
}

/** Bound on all sockets being registered, or all rows gone after they close. */
const SOCKETS_TIMEOUT_MS = 5 * 60_000;
/**
 * Two gateway heartbeat periods (T/2 = 45 s by default): a window that is a whole number of
 * periods holds the same number of beats whatever their phase (60 s would hold 1 or 2 per gateway).
 */
const WINDOW_SECONDS = 90;
/** Sockets opened before waiting for the actor to accept them (openHibernating). */
const OPEN_CHUNK = 1000;
/** File descriptors this process needs besides its sockets (modules, pipes, pools). */
const FD_MARGIN = 1000;

type Gateway = Awaited<ReturnType<typeof startMeasuredGateway>>;

export const gatewaySockets: Benchmark<Flags> = {
  name: 'gateway-sockets',
  description: 'Postgres writes/min and gateway memory per socket with N hibernating sockets over two gateways',
  declareFlags(command: Command) {
    command
      .option('--sockets <count>', 'hibernating sockets, half on each gateway', positiveInt, 10_000)
      .option('--seconds <count>', 'length of each write-counting window', positiveInt, WINDOW_SECONDS);
  },
  async run(flags, context) {
    await checkOpenFileLimit(flags.sockets + FD_MARGIN);
    // One worker; no runner of the stack's own (each configuration has its own, started below).
    return withBenchStack({ workers: 1, runners: 0, gateways: 2 }, context, (stack) => measure(stack, flags, context));
  },
};

async function measure(stack: LocalStack, flags: Flags, context: BenchContext): Promise<Figure[]> {
  const { log, signal } = context;
  const db = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
  let clients: WebSocket[] = [];
  try {
    const twoA = await startMeasuredGateway(stack, { name: 'two-a', runner: { pool: 'gateway-sockets-two' } });
    const twoB = await startMeasuredGateway(stack, { name: 'two-b', runner: false });
    const one = await startMeasuredGateway(stack, { name: 'one', runner: { pool: 'gateway-sockets-one' } });
    const runId = randomBytes(4).toString('hex');
    const twoRoom = await createChat(twoA.url, `gateway-sockets-two-${runId}`, signal, 'gateway-sockets-two');
    const oneRoom = await createChat(one.url, `gateway-sockets-one-${runId}`, signal, 'gateway-sockets-one');

    log.info({ seconds: flags.seconds }, 'counting writes with no sockets');
    const idle = await writesDuring(db, flags.seconds, context);

    const half = Math.floor(flags.sockets / 2);
    const spreadBefore = await retained([twoA, twoB]);
    clients = await openHibernating(
      db,
      twoRoom,
      [
        [twoA, flags.sockets - half],
        [twoB, half],
      ],
      context,
    );
    const spreadBytes = (await retained([twoA, twoB])) - spreadBefore;
    log.info({ seconds: flags.seconds, sockets: flags.sockets }, 'counting writes with the sockets hibernating');
    const hibernating = await writesDuring(db, flags.seconds, context);

    for (const ws of clients) ws.terminate();
    clients = [];
    await waitForRows(db, twoRoom, 0, signal);

    const oneBefore = await retained([one]);
    clients = await openHibernating(db, oneRoom, [[one, flags.sockets]], context);
    const oneBytes = (await retained([one])) - oneBefore;

    return [
      quantityOf(
        'gateway-sockets.pg-writes-per-minute',
        flags.sockets,
        { value: hibernating, unit: 'writes/min' },
        { name: 'no sockets', value: idle },
      ),
      quantityOf(
        'gateway-sockets.gateway-bytes-per-socket',
        flags.sockets,
        { value: spreadBytes / flags.sockets, unit: 'bytes' },
        { name: 'one gateway', value: oneBytes / flags.sockets },
      ),
    ];
  } finally {
    for (const ws of clients) ws.terminate();
    await db.end();
  }
}

/**
 * Opens `count` sockets to the room on each gateway, waits for their rows, puts the room to
 * sleep. A chunk at a time, each accepted by the actor (its rows written) before the next: the
 * gateway completes a client's upgrade before the actor accepts it, so opening all at once would
 * leave thousands of opens queued at the actor, and those unanswered within the acknowledgement
 * timeout (30 s) are retried on the next generation, whose wait wakes the room right after it
 * sleeps.
 */
async function openHibernating(
  db: pg.Pool,
  actorId: string,
  placement: [Gateway, number][],
  context: BenchContext,
): Promise<WebSocket[]> {
  const clients: WebSocket[] = [];
  for (const [gateway, n] of placement) {
    context.log.info({ gateway: gateway.url, sockets: n }, 'opening sockets');
    for (let opened = 0; opened < n; opened += OPEN_CHUNK) {
      const chunk = Math.min(OPEN_CHUNK, n - opened);
      clients.push(...(await openSockets(`${wsBase(gateway.url)}/actors/${actorId}/ws`, chunk)));
      await waitForRows(db, actorId, clients.length, context.signal);
    }
  }
  await putToSleep(placement[0]![0].url, actorId);
  context.log.info({ actorId, sockets: clients.length }, 'sockets hibernating');
  return clients;
}

async function waitForRows(db: pg.Pool, actorId: string, n: number, signal: AbortSignal): Promise<void> {
  await waitFor(
    async () => (await count(db, 'SELECT count(*) FROM hibernating_requests WHERE actor_id = $1', [actorId])) === n,
    { timeoutMs: SOCKETS_TIMEOUT_MS, intervalMs: 500, message: `${n} hibernating rows of room ${actorId}`, signal },
  );
}

/** Retained bytes (bench/inspector.ts) summed over the gateways. */
async function retained(gateways: Gateway[]): Promise<number> {
  const bytes = await Promise.all(gateways.map((g) => retainedBytes(g.inspectorPort)));
  return bytes.reduce((a, b) => a + b, 0);
}

/** Throws with what to do if this process may not open `needed` files (its soft limit, as Node raised it). */
async function checkOpenFileLimit(needed: number): Promise<void> {
  const limits = await readFile('/proc/self/limits', 'utf8');
  const soft = /^Max open files\s+(\d+|unlimited)/m.exec(limits)?.[1];
  if (soft === undefined || soft === 'unlimited' || Number(soft) >= needed) return;
  throw new Error(
    `--sockets needs about ${needed} open files in this process and in the baseline's gateway, but the limit is ${soft}: ` +
      `raise it (ulimit -n ${needed}; the hard limit, ulimit -Hn, bounds it) or pass fewer --sockets`,
  );
}
