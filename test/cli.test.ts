/**
 * The `dormouse` command line, run as a real child process against a real stack: the actors
 * commands with `--json` and as tables, errors and their exit codes, `doctor` passing and
 * failing, and `ws` relaying stdin to a chat actor and its broadcasts to stdout.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runCommand, type CommandResult } from '../dev/exec.js';
import { freePort } from '../dev/free-port.js';
import { startNatsServer } from '../dev/nats-server.js';
import { databaseUrl } from '../dev/postgres.js';
import { errorMessage } from '../src/errors.js';
import { within } from '../dev/wait.js';
import { createActor, waitForActor, type Api } from './harness/actors.js';
import { actorsApi, type ActorView } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CLI_ARGS = ['--import', 'tsx', 'src/cli/main.ts'];
/** Generous: tsx compiles the CLI on a cold start, on a machine busy with other stacks. */
const CLI_TIMEOUT_MS = 60_000;
const UNKNOWN_ACTOR = '00000000-0000-4000-8000-000000000000';

let stack: TestStack;
let api: Api;

beforeAll(async () => {
  stack = await createTestStack();
  api = actorsApi(stack.gatewayUrl);
});
afterAll(() => stack?.stop());

/** The environment that points the CLI at this file's stack, with `overrides` on top. */
function stackEnv(overrides: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DORMOUSE_GATEWAY_URL: stack.gatewayUrl,
    DATABASE_URL: stack.databaseUrl,
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TEMPORAL_NAMESPACE: stack.namespace,
    ...overrides,
  };
}

/** Runs `dormouse <args>` to completion, bounded. */
async function dormouse(args: string[], env: Record<string, string> = {}): Promise<CommandResult> {
  const result = await runCommand(process.execPath, [...CLI_ARGS, ...args], {
    timeoutMs: CLI_TIMEOUT_MS,
    cwd: ROOT,
    env: stackEnv(env),
  });
  if (result.timedOut)
    throw new Error(`dormouse ${args.join(' ')} did not finish within ${CLI_TIMEOUT_MS} ms:\n${result.stderr}`);
  return result;
}

/** Runs `dormouse <args> --json`, expects exit 0, and parses stdout. */
async function dormouseJson<T>(args: string[], env: Record<string, string> = {}): Promise<T> {
  const result = await dormouse([...args, '--json'], env);
  expect(result.exitCode, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as T;
}

/** `dormouse <args>` running, with what it has written so far; killed by the caller's `finally`. */
interface RunningCli {
  child: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  /** The exit code, or null if it was killed by a signal. */
  exited: Promise<number | null>;
  /** Aborted when the process exits: a wait on its output need not run to its deadline. */
  gone: AbortSignal;
}

function startCli(args: string[]): RunningCli {
  const child = spawn(process.execPath, [...CLI_ARGS, ...args], { cwd: ROOT, env: stackEnv(), stdio: 'pipe' });
  const gone = new AbortController();
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      gone.abort(new Error(`dormouse ${args.join(' ')} exited (code ${code})`));
      resolve(code);
    }),
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return { child, stdout: () => stdout, stderr: () => stderr, exited, gone: gone.signal };
}

/** Waits until `ready` returns a value; a failure shows what the CLI had written. */
async function waitForOutput<T>(cli: RunningCli, ready: () => T | false, what: string): Promise<T> {
  try {
    return await waitFor(ready, { timeoutMs: 30_000, message: what, signal: cli.gone });
  } catch (err) {
    throw new Error(`${errorMessage(err)}\nstdout: ${cli.stdout()}\nstderr: ${cli.stderr()}`, { cause: err });
  }
}

async function waitForExit(cli: RunningCli): Promise<number | null | undefined> {
  return within(cli.exited, 30_000);
}

describe('dormouse actors', () => {
  it('creates, gets, lists, sleeps, wakes and destroys an actor, with --json', async () => {
    const created = await dormouseJson<{ actor: ActorView }>([
      'actors',
      'create',
      'chat',
      '--key',
      'cli-json',
      '--input',
      '{"sleepAfterMs":600000}',
    ]);
    expect(created.actor).toMatchObject({
      name: 'chat',
      key: 'cli-json',
      input: { sleepAfterMs: 600000 },
      generation: 0,
    });
    const { actorId } = created.actor;
    expect(created.actor.pool).toBe('default');

    // Placed in another pool (no runner of it here, so it waits for one).
    const pooled = await dormouseJson<{ actor: ActorView }>(['actors', 'create', 'chat', '--pool', 'gpu']);
    expect(pooled.actor).toMatchObject({ name: 'chat', pool: 'gpu' });
    await dormouseJson(['actors', 'destroy', pooled.actor.actorId]);

    const got = await dormouseJson<{ actor: ActorView }>(['actors', 'get', actorId]);
    expect(got.actor).toMatchObject({ actorId, name: 'chat', key: 'cli-json' });
    const listed = await dormouseJson<{ actors: ActorView[] }>([
      'actors',
      'list',
      '--name',
      'chat',
      '--key',
      'cli-json',
    ]);
    expect(listed.actors.map((a) => a.actorId)).toEqual([actorId]);
    await waitForActor(api, actorId, (a) => a.state === 'running', 'running');

    const slept = await dormouseJson<{ actor: ActorView }>(['actors', 'sleep', actorId]);
    expect(slept.actor.actorId).toBe(actorId);
    await waitForActor(api, actorId, (a) => a.state === 'sleeping', 'asleep on `dormouse actors sleep`');

    await dormouseJson(['actors', 'wake', actorId]);
    await waitForActor(
      api,
      actorId,
      (a) => a.state === 'running' && a.generation === 2,
      'awake on `dormouse actors wake`',
    );

    await dormouseJson(['actors', 'destroy', actorId]);
    await waitForActor(api, actorId, (a) => a.state === 'destroyed', 'destroyed on `dormouse actors destroy`');
    const after = await dormouseJson<{ actors: ActorView[] }>([
      'actors',
      'list',
      '--name',
      'chat',
      '--key',
      'cli-json',
    ]);
    expect(after.actors).toEqual([]);
  });

  it('prints a table of actors by default', async () => {
    const actor = await createActor(api, { name: 'chat', key: 'cli-table' });

    const got = await dormouse(['actors', 'get', actor.actorId]);
    expect(got.exitCode, got.stderr).toBe(0);
    const [header, row, ...rest] = got.stdout.trimEnd().split('\n');
    expect(header?.split(/\s{2,}/)).toEqual(['ACTOR ID', 'NAME', 'KEY', 'STATE', 'GENERATION', 'RUNNER', 'CREATED']);
    expect(row?.split(/\s{2,}/).slice(0, 3)).toEqual([actor.actorId, 'chat', 'cli-table']);
    expect(rest).toEqual([]);

    const listed = await dormouse(['actors', 'list', '--key', 'cli-table']);
    expect(listed.exitCode, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/^ACTOR ID\s+NAME\s+KEY\s+STATE\s+GENERATION\s+RUNNER\s+CREATED\n/);
    expect(listed.stdout).toContain(actor.actorId);
  });

  it('exits 1 with the API message for an unknown actor', async () => {
    const result = await dormouse(['actors', 'get', UNKNOWN_ACTOR]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`no actor ${UNKNOWN_ACTOR} (404 actor_not_found)`);
    expect(result.stdout).toBe('');
  });

  it('exits 2 with commander’s message for a bad flag', async () => {
    const result = await dormouse(['actors', 'list', '--bogus']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("unknown option '--bogus'");
  });

  it('exits 1 when the gateway cannot be reached, and --gateway overrides the environment', async () => {
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    const refused = await dormouse(['actors', 'list'], { DORMOUSE_GATEWAY_URL: nowhere });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(`cannot reach the gateway at ${nowhere}: is it running?`);

    const overridden = await dormouse(['actors', 'list', '--gateway', stack.gatewayUrl, '--json'], {
      DORMOUSE_GATEWAY_URL: nowhere,
    });
    expect(overridden.exitCode, overridden.stderr).toBe(0);
    expect(JSON.parse(overridden.stdout)).toHaveProperty('actors');
  });
});

describe('dormouse doctor', () => {
  it('passes against a working stack', async () => {
    const report = await dormouseJson<{ ok: boolean; checks: { name: string; status: string; detail: string }[] }>([
      'doctor',
    ]);
    expect(report.checks.map((c) => [c.name, c.status])).toEqual([
      ['temporal', 'ok'],
      ['postgres', 'ok'],
      ['schema', 'ok'],
      ['searchAttributes', 'ok'],
      ['runners', 'ok'],
    ]);
    expect(report.ok).toBe(true);

    const human = await dormouse(['doctor']);
    expect(human.exitCode, human.stdout).toBe(0);
    expect(
      human.stdout
        .trimEnd()
        .split('\n')
        .map((line) => line.slice(0, 1)),
    ).toEqual(['✓', '✓', '✓', '✓', '✓']);
  });

  it('fails, naming the check, when the database does not exist', async () => {
    const missing = databaseUrl(stack.databaseUrl, 'dormouse_cli_no_such_database');
    const result = await dormouse(['doctor'], { DATABASE_URL: missing });
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toMatch(/^✗ Postgres reachable\s+.*"dormouse_cli_no_such_database" does not exist$/m);
    expect(result.stdout).toMatch(/^✓ Temporal reachable/m);
  });

  it('checks NATS when DORMOUSE_NATS_URL is set, and fails that check when nothing answers there', async () => {
    const nats = await startNatsServer();
    try {
      const report = await dormouseJson<{ ok: boolean; checks: { name: string; status: string; detail: string }[] }>(
        ['doctor'],
        { DORMOUSE_NATS_URL: nats.url },
      );
      expect(report.checks.map((c) => [c.name, c.status])).toEqual([
        ['temporal', 'ok'],
        ['postgres', 'ok'],
        ['schema', 'ok'],
        ['searchAttributes', 'ok'],
        ['runners', 'ok'],
        ['nats', 'ok'],
      ]);
      expect(report.checks.at(-1)!.detail).toMatch(/nats-server \d+\.\d+/);
    } finally {
      await nats.stop();
    }

    const result = await dormouse(['doctor'], { DORMOUSE_NATS_URL: nats.url });
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toMatch(/^✓ runners connected/m);
    expect(result.stdout).toContain(`✗ NATS reachable`);
    expect(result.stdout).toContain(`cannot connect to ${nats.url}`);
  });
});

describe('dormouse ws', () => {
  it('sends stdin lines to a chat actor, prints its broadcasts, and closes normally at the end of input', async () => {
    const actor = await createActor(api, { name: 'chat', key: 'cli-ws' });
    const cli = startCli(['ws', actor.actorId, '?name=cli']);
    try {
      cli.child.stdin.write('hello\nworld\n');
      const lines = await waitForOutput(
        cli,
        () => {
          const complete = cli.stdout().split('\n').slice(0, -1);
          return complete.length >= 2 && complete;
        },
        'two broadcasts on stdout',
      );
      expect(lines.map((line) => JSON.parse(line) as unknown)).toEqual([
        { seq: 1, from: 'cli', text: 'hello' },
        { seq: 2, from: 'cli', text: 'world' },
      ]);

      cli.child.stdin.end();
      expect(await waitForExit(cli), cli.stderr()).toBe(0);
      expect(cli.stderr()).toContain('closed 1000 (Normal)');
    } finally {
      cli.child.kill('SIGKILL');
    }
  });

  it('exits 1, naming the close code, when the actor is destroyed under it', async () => {
    const actor = await createActor(api, { name: 'chat', key: 'cli-ws-destroyed' });
    const cli = startCli(['ws', actor.actorId]);
    try {
      await waitForOutput(cli, () => cli.stderr().includes('connected to '), 'the socket to open');
      expect((await api.destroy(actor.actorId)).status).toBe(202);
      expect(await waitForExit(cli), cli.stderr()).toBe(1);
      expect(cli.stderr()).toContain('closed 4410 (ActorDestroyed)');
    } finally {
      cli.child.kill('SIGKILL');
    }
  });

  it('exits 1 with the gateway’s message when it refuses the upgrade', async () => {
    const result = await dormouse(['ws', UNKNOWN_ACTOR]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`no actor ${UNKNOWN_ACTOR} (404 actor_not_found)`);
  });
});
