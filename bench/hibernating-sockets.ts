/**
 * `hibernating-sockets`: what keeping hibernating WebSockets alive costs.
 *
 * - Postgres writes per minute (rows inserted, updated or deleted, from `pg_stat_user_tables`)
 *   with N sockets hibernating on one gateway, against the same stack with none: the keepalive
 *   is one heartbeat UPDATE per gateway per T/2, so the two should match (Rivet writes a row per
 *   socket per tick).
 * - Gateway memory retained per hibernating socket (heap and buffers after a full GC, read
 *   through the inspector), against a bare `ws` server holding the same N sockets.
 *
 * These are not latencies: each line carries `value` and `unit` where the latency benchmarks
 * carry `median_ms` and `p99_ms`.
 */
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import pg from 'pg';
import WebSocket from 'ws';
import { freePort } from '../dev/free-port.js';
import { waitFor } from '../dev/wait.js';
import type { LocalStack } from '../dev/local-stack.js';
import { retainedBytes } from './inspector.js';
import {
  declareStackFlags,
  quantityOf,
  withBenchStack,
  type BenchContext,
  type Benchmark,
  type StackFlags,
} from './benchmark.js';

const STATISTICS_QUIET_MS = 15_000;

interface Flags extends StackFlags {
  sockets: number;
  seconds: number;
}

export const hibernatingSockets: Benchmark<Flags> = {
  name: 'hibernating-sockets',
  description: 'Postgres writes per minute and gateway memory per socket with N hibernating sockets',
  declareFlags(command: Command) {
    command
      .option('--sockets <count>', 'hibernating sockets on one actor', Number, 1000)
      .option('--seconds <count>', 'length of each write-counting window', Number, 60);
    declareStackFlags(command, { workers: 1, runners: 1 });
  },
  async run(flags, context) {
    // The stack's own runner would attach to its own gateway; the measured pair is started below.
    return withBenchStack({ ...flags, runners: 0, gateways: 2 }, context, async (stack) => {
      const db = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
      const clients: WebSocket[] = [];
      try {
        const measured = await startMeasuredGateway(stack);
        context.log.info({ seconds: flags.seconds }, 'counting writes with no sockets');
        const idle = await writesDuring(db, flags.seconds, context);

        const before = await retainedBytes(measured.inspectorPort);
        const roomId = await createRoom(measured.url);
        clients.push(...(await openSockets(`${wsBase(measured.url)}/actors/${roomId}/ws`, flags.sockets)));
        await waitFor(async () => (await count(db, 'SELECT count(*) FROM hibernating_requests')) === flags.sockets, {
          timeoutMs: 120_000,
          message: `${flags.sockets} sockets registered`,
        });
        await putToSleep(measured.url, roomId);
        const after = await retainedBytes(measured.inspectorPort);

        context.log.info(
          { seconds: flags.seconds, sockets: flags.sockets },
          'counting writes with the sockets hibernating',
        );
        const hibernating = await writesDuring(db, flags.seconds, context);

        const bare = await bareServerBytesPerSocket(stack, flags.sockets);
        return [
          quantityOf(
            'hibernating-sockets.pg-writes-per-minute',
            flags.sockets,
            { value: hibernating, unit: 'writes/min' },
            { name: 'no sockets', value: idle },
          ),
          quantityOf(
            'hibernating-sockets.gateway-bytes-per-socket',
            flags.sockets,
            { value: (after - before) / flags.sockets, unit: 'bytes' },
            { name: 'bare ws server', value: bare },
          ),
        ];
      } finally {
        for (const ws of clients) ws.terminate();
        await db.end();
      }
    });
  },
};

/**
 * A gateway with its inspector open beside the stack's own (`gateway-<name>`), and unless
 * `runner` is false a runner connected to it (`runner-<name>`, of `runner.pool` if given).
 */
export async function startMeasuredGateway(
  stack: LocalStack,
  { name = 'measured', runner = {} }: { name?: string; runner?: { pool?: string } | false } = {},
): Promise<{ url: string; inspectorPort: number }> {
  const [port, inspectorPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${port}`;
  await stack.startProcess({
    name: `gateway-${name}`,
    script: fileURLToPath(new URL('../src/gateway/main.ts', import.meta.url)),
    env: {
      DORMOUSE_GATEWAY_PORT: String(port),
      DORMOUSE_GATEWAY_URL: url,
      NODE_OPTIONS: `--inspect=127.0.0.1:${inspectorPort}`,
    },
  });
  if (runner) {
    await stack.startProcess({
      name: `runner-${name}`,
      script: fileURLToPath(new URL('../examples/runner.ts', import.meta.url)),
      env: { DORMOUSE_GATEWAY_URL: url, ...(runner.pool === undefined ? {} : { DORMOUSE_RUNNER_POOL: runner.pool }) },
    });
  }
  return { url, inspectorPort };
}

/**
 * Rows written per minute over a window, by table in the diagnostics. Postgres publishes table
 * statistics lazily (a busy backend may hold them back for up to a minute), so the window opens
 * only once they have stopped moving for a few seconds: writes made before it stay out of it.
 */
export async function writesDuring(db: pg.Pool, seconds: number, context: BenchContext): Promise<number> {
  await statisticsSettled(db, context);
  const before = await tableWrites(db);
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const after = await tableWrites(db);
  const changed = [...after]
    .map(([table, n]): [string, number] => [table, n - (before.get(table) ?? 0)])
    .filter(([, n]) => n !== 0);
  const byTable = Object.fromEntries(changed);
  const total = changed.reduce((sum, [, n]) => sum + n, 0);
  context.log.info({ byTable, total, seconds }, 'writes in the window');
  return (total * 60) / seconds;
}

/**
 * Waits (bounded) until no table but the heartbeat-driven ones has moved for 15 s: longer than
 * an idle backend holds its statistics back (10 s, PGSTAT_IDLE_INTERVAL).
 */
async function statisticsSettled(db: pg.Pool, context: BenchContext): Promise<void> {
  const periodic = new Set(['runners', 'gateways']);
  const snapshot = async () =>
    [...(await tableWrites(db))]
      .filter(([t]) => !periodic.has(t))
      .map(([t, n]) => `${t}=${n}`)
      .join();
  let last = await snapshot();
  let quietSince = Date.now();
  await waitFor(
    async () => {
      const now = await snapshot();
      if (now !== last) {
        last = now;
        quietSince = Date.now();
      }
      return Date.now() - quietSince >= STATISTICS_QUIET_MS;
    },
    { timeoutMs: 180_000, intervalMs: 500, message: 'table statistics settled' },
  );
  context.log.info('table statistics settled');
}

async function tableWrites(db: pg.Pool): Promise<Map<string, number>> {
  const { rows } = await db.query<{ relname: string; writes: string }>(
    'SELECT relname, n_tup_ins + n_tup_upd + n_tup_del AS writes FROM pg_stat_user_tables',
  );
  return new Map(rows.map((r) => [r.relname, Number(r.writes)]));
}

export async function count(db: pg.Pool, sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await db.query<{ count: string }>(sql, params);
  return Number(rows[0]?.count ?? 0);
}

async function createRoom(gatewayUrl: string): Promise<string> {
  const response = await fetch(`${gatewayUrl}/actors`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'chat', input: { sleepAfterMs: 60 * 60_000 } }),
  });
  return ((await response.json()) as { actor: { actorId: string } }).actor.actorId;
}

export async function putToSleep(gatewayUrl: string, actorId: string): Promise<void> {
  await fetch(`${gatewayUrl}/actors/${actorId}/sleep`, { method: 'POST' });
  await waitFor(
    async () =>
      ((await (await fetch(`${gatewayUrl}/actors/${actorId}`)).json()) as { actor: { state: string } }).actor.state ===
      'sleeping',
    { timeoutMs: 60_000, message: 'the room asleep' },
  );
}

/** Opens `n` sockets, a hundred at a time. */
export async function openSockets(url: string, n: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  for (let i = 0; i < n; i += 100) {
    const batch = Array.from({ length: Math.min(100, n - i) }, () => new WebSocket(url));
    await Promise.all(
      batch.map((ws) => new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))),
    );
    sockets.push(...batch);
  }
  return sockets;
}

/** The bare server's retained memory per socket for the same number of sockets. */
async function bareServerBytesPerSocket(stack: LocalStack, n: number): Promise<number> {
  const [port, inspectorPort] = [await freePort(), await freePort()];
  await stack.startProcess({
    name: 'bare-ws',
    script: fileURLToPath(new URL('./bare-ws-server.ts', import.meta.url)),
    env: { BENCH_WS_PORT: String(port), NODE_OPTIONS: `--inspect=127.0.0.1:${inspectorPort}` },
  });
  const before = await retainedBytes(inspectorPort);
  const sockets = await openSockets(`ws://127.0.0.1:${port}`, n);
  const after = await retainedBytes(inspectorPort);
  for (const ws of sockets) ws.terminate();
  return (after - before) / n;
}

export function wsBase(httpUrl: string): string {
  return httpUrl.replace(/^http/, 'ws');
}
