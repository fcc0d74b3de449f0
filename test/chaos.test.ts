/**
 * The short seeded chaos round (issue 8 §4, bench/chaos.ts): a real stack of its own, chat
 * clients checking every broadcast, and faults from a fixed seed. Run as a child process, as
 * `npm run chaos` runs it; its counters must all be 0.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { within } from '../dev/wait.js';
import { FAILING } from '../bench/chaos.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SEED = 7;
const DURATION_S = 60;
/** Start-up, the round, the final settle and the stop, on a busy two-core machine. */
const RUN_TIMEOUT_MS = 360_000;
/** After SIGINT the run stops its stack; then SIGKILL. */
const STOP_GRACE_MS = 30_000;

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
    const { code, stdout, stderr } = await runChaos(['--seed', String(SEED), '--duration', String(DURATION_S)]);
    const line = stdout.trim().split('\n').at(-1);
    expect(line, `no output line; stderr:\n${stderr.slice(-4000)}`).toBeTruthy();
    const result = JSON.parse(line!) as ChaosLine;
    expect(result).toMatchObject({ bench: 'chaos', seed: SEED, failed_run: false });
    for (const counter of FAILING) expect(result[counter], `${counter}: ${line}`).toBe(0);
    expect(Object.values(result.faults).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(4);
    expect(result.messages).toBeGreaterThan(100);
    expect(code, stderr.slice(-4000)).toBe(0);
  },
  RUN_TIMEOUT_MS + STOP_GRACE_MS + 30_000,
);

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
