/**
 * The short seeded chaos rounds (issue 8 §4, bench/chaos.ts): a real stack of its own, chat
 * clients checking every broadcast, and faults from a fixed seed; once with one gateway, once
 * with two on NATS and resumable sessions (issue 9). Run as a child process, as `npm run chaos`
 * runs it; its counters must all be 0.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { within } from '../dev/wait.js';
import { FAILING } from '../bench/chaos.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SEED = 7;
const DURATION_S = 60;
/**
 * Two gateways on NATS, every client a resumable session: the faults that move clients and runners
 * between gateways (the others are the round above's), in a shorter round to spare the suite.
 */
const GATEWAYS_SEED = 5;
const GATEWAYS_DURATION_S = 45;
const GATEWAYS_FAULTS = 'gateway_kill,nats_restart,runner_kill,runner_stop';
/** Start-up, the round, the final settle and the stop, on a busy two-core machine. */
const RUN_TIMEOUT_MS = 360_000;
/** After SIGINT the run stops its stack; then SIGKILL. */
const STOP_GRACE_MS = 30_000;
const TEST_TIMEOUT_MS = RUN_TIMEOUT_MS + STOP_GRACE_MS + 30_000;

interface ChaosLine {
  bench: string;
  seed: number;
  faults: Record<string, number>;
  messages: number;
  [counter: string]: unknown;
}

it(
  `a ${DURATION_S} s chaos round with seed ${SEED} loses, doubles and reorders nothing`,
  async () => {
    await expectClean(SEED, ['--duration', String(DURATION_S)]);
  },
  TEST_TIMEOUT_MS,
);

it(
  `a ${GATEWAYS_DURATION_S} s round over two gateways with seed ${GATEWAYS_SEED}: a gateway's death costs clients nothing`,
  async () => {
    const result = await expectClean(GATEWAYS_SEED, [
      '--duration',
      String(GATEWAYS_DURATION_S),
      '--gateways',
      '2',
      '--faults',
      GATEWAYS_FAULTS,
    ]);
    // The seed kills a gateway: its clients resumed rather than closed.
    expect(result.faults.gateway_kill).toBeGreaterThanOrEqual(1);
    expect(result.resumed_sessions).toBeGreaterThan(0);
    expect(result).toMatchObject({ gateway_closed_clients: 0, unknown_inbound: 0 });
  },
  TEST_TIMEOUT_MS,
);

/** Runs a round; every failing counter must be 0 and the round must have done some work. */
async function expectClean(seed: number, args: string[]): Promise<ChaosLine> {
  const { code, stdout, stderr } = await runChaos(['--seed', String(seed), ...args]);
  const line = stdout.trim().split('\n').at(-1);
  expect(line, `no output line; stderr:\n${stderr.slice(-4000)}`).toBeTruthy();
  const result = JSON.parse(line!) as ChaosLine;
  expect(result).toMatchObject({ bench: 'chaos', seed, failed_run: false });
  for (const counter of FAILING) expect(result[counter], `${counter}: ${line}`).toBe(0);
  expect(Object.values(result.faults).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(4);
  expect(result.messages).toBeGreaterThan(100);
  expect(code, stderr.slice(-4000)).toBe(0);
  return result;
}

/** The chaos run as a child, on servers of its own (not the test run's shared ones). */
async function runChaos(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DATABASE_URL;
  delete env.TEMPORAL_ADDRESS;
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/chaos.ts', ...args], { cwd: ROOT, env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let code = await within(exited, RUN_TIMEOUT_MS);
  if (code === undefined) {
    // SIGINT lets it stop its stack (Postgres, Temporal) instead of leaving them behind.
    child.kill('SIGINT');
    code = (await within(exited, STOP_GRACE_MS)) ?? (child.kill('SIGKILL'), await exited);
  }
  return { code, stdout, stderr };
}
