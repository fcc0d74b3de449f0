/**
 * docker-compose.yml, the Dockerfile and their scripts, checked without a Docker engine: the
 * Compose file against the compose-spec JSON schema (and `docker compose config` / Debian's
 * `docker-compose config` where one is installed), then against the code it runs — every variable
 * a Dormouse process gets is a setting of src/config.ts and passes loadConfig, the search
 * attributes are those the workflows use, every path exists, the start-up order holds — and the
 * one-shot scripts run against stand-ins for `temporal` and `temporal-sql-tool`.
 * What only a Docker engine can show (the images pull, build and start) is not tested here.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { CONFIG_ENV_KEYS, loadConfig, requireGatewayTokens, type Config } from '../src/config.js';
import { NATS_MAX_PAYLOAD } from '../dev/nats-server.js';
import { QUEUE_POLL_LIMITS } from '../dev/temporal-server.js';
import { ACTOR_SEARCH_ATTRIBUTES } from '../src/workflows/search-attributes.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const COMPOSE_FILE = join(ROOT, 'docker-compose.yml');
const ENV_EXAMPLE = join(ROOT, '.env.example');
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

/** The Dormouse services: built from the Dockerfile, configured by src/config.ts. */
const DORMOUSE_SERVICES = ['worker', 'gateway', 'gateway-2', 'runner'] as const;
/** The gateways, which share NATS (DESIGN §2.1). */
const GATEWAYS = ['gateway', 'gateway-2'] as const;
/** Prefixes of the variables that are Dormouse's own settings wherever they appear. */
const CONFIG_PREFIX = /^(DORMOUSE_|TEMPORAL_|DATABASE_URL$)/;
/** The Temporal CLI's names for search attribute types. */
const CLI_TYPE_NAMES: Record<string, string> = { KEYWORD: 'Keyword', INT: 'Int' };

type Env = Record<string, string>;
interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  entrypoint?: string[];
  environment?: Env;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  deploy?: { replicas?: number | string };
  stop_grace_period?: string;
  ports?: string[];
  volumes?: string[];
  restart?: string;
}
interface ComposeFile {
  services: Record<string, Service>;
}

// ---------------------------------------------------------------------------------------------
// Reading the files

/** `KEY=value` lines of an env file (comments and blank lines skipped). */
function parseEnvFile(text: string): Env {
  const env: Env = {};
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim());
    if (match) env[match[1]!] = match[2]!;
  }
  return env;
}

/** The Compose file as written: YAML merge keys (`<<`) resolved, `${...}` left alone. */
function loadComposeRaw(text = read('docker-compose.yml')): ComposeFile {
  return parseYaml(text, { merge: true }) as ComposeFile;
}

interface Reference {
  name: string;
  /** '', ':-', '-', ':?', '?', ':+' or '+'. */
  operator: string;
  argument: string;
}

/** Every `${NAME...}` in the text (the file uses no unbraced `$NAME`; a test says so). */
function references(text: string): Reference[] {
  return [...text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}/g)].map((m) => ({
    name: m[1]!,
    operator: m[2] ?? '',
    argument: m[3] ?? '',
  }));
}

/** Compose's interpolation, for the forms this file may use; a missing required variable throws. */
function interpolate(value: string, env: Env): string {
  return value.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}/g,
    (whole, name?: string, op?: string, arg: string = '') => {
      if (whole === '$$') return '$';
      const value = env[name!];
      const set = value !== undefined;
      const nonEmpty = set && value !== '';
      switch (op) {
        case undefined:
          return value ?? '';
        case ':-':
          return nonEmpty ? value : arg;
        case '-':
          return set ? value : arg;
        case ':?':
        case '?':
          if (op === ':?' ? !nonEmpty : !set) throw new Error(`required variable ${name} is missing a value: ${arg}`);
          return value!;
        case ':+':
          return nonEmpty ? arg : '';
        default:
          return set ? arg : '';
      }
    },
  );
}

function interpolateDeep<T>(value: T, env: Env): T {
  if (typeof value === 'string') return interpolate(value, env) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => interpolateDeep(v, env)) as T;
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolateDeep(v, env)])) as T;
  }
  return value;
}

/** Compose durations: `30s`, `1m30s`, `1h`, `500ms`. */
function durationMs(duration: string): number {
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1, us: 0.001 };
  const parts = [...duration.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== duration)
    throw new Error(`not a duration: ${duration}`);
  return parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]!]!, 0);
}

interface DockerfileStage {
  from: string;
  name: string | undefined;
  instructions: { keyword: string; args: string }[];
}

/** The Dockerfile's stages and their instructions (continuation lines joined, comments dropped). */
function parseDockerfile(text = read('Dockerfile')): DockerfileStage[] {
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const stages: DockerfileStage[] = [];
  for (const line of lines) {
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    if (keyword.toUpperCase() === 'FROM') {
      const [from = '', , name] = args.split(/\s+/);
      stages.push({ from, name, instructions: [] });
    } else stages.at(-1)?.instructions.push({ keyword: keyword.toUpperCase(), args });
  }
  return stages;
}

/** `ENV A=1 B=2` of a stage, as a map. */
function dockerfileEnv(stage: DockerfileStage): Env {
  const env: Env = {};
  for (const { keyword, args } of stage.instructions) {
    if (keyword !== 'ENV') continue;
    for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)/g)) env[m[1]!] = m[2]!.replace(/^"|"$/g, '');
  }
  return env;
}

/** Whether .dockerignore lets `path` into the build context (Docker's rules: last match wins, a pattern matching a parent matches). */
function inBuildContext(path: string, dockerignore = read('.dockerignore')): boolean {
  const patterns = dockerignore
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  // `**/` is any number of directories, none included; `*` stays within one.
  const toRegExp = (glob: string) =>
    new RegExp(
      `^${glob
        .replace(/\/$/, '')
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*\//g, '\uE000')
        .replace(/\*\*/g, '\uE001')
        .replace(/\*/g, '[^/]*')
        .replace(/\uE000/g, '(?:.*/)?')
        .replace(/\uE001/g, '.*')}$`,
    );
  const candidates = path.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
  let included = true;
  for (const pattern of patterns) {
    const negated = pattern.startsWith('!');
    const regExp = toRegExp(negated ? pattern.slice(1) : pattern);
    if (candidates.some((c) => regExp.test(c))) included = negated;
  }
  return included;
}

/** A container path under one of the service's bind mounts, as the host path it comes from. */
function hostPathOf(service: Service, containerPath: string): string | undefined {
  for (const volume of service.volumes ?? []) {
    const [source = '', target = ''] = volume.split(':');
    if (!source.startsWith('./')) continue;
    if (containerPath === target) return source.slice(2);
    if (containerPath.startsWith(`${target}/`)) return join(source.slice(2), containerPath.slice(target.length + 1));
  }
  return undefined;
}

/** A path the compiled image runs (`src/worker.js`) as the repository file it is compiled from. */
function sourceOf(path: string): string {
  return path.replace(/\.js$/, '.ts');
}

/** Which Compose CLI is installed, if any: `docker compose` (v2 plugin) or `docker-compose`. */
function findComposeCli(): string[] | undefined {
  for (const command of [['docker', 'compose'], ['docker-compose']]) {
    const result = spawnSync(command[0]!, [...command.slice(1), 'version'], { encoding: 'utf8', timeout: 30_000 });
    if (result.status === 0) return command;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------

const keys = new Set(CONFIG_ENV_KEYS);
const raw = loadComposeRaw();
const composeText = read('docker-compose.yml');
const envExample = parseEnvFile(read('.env.example'));
const stages = parseDockerfile();
const runtimeStage = stages.at(-1)!;
const imageEnv = dockerfileEnv(runtimeStage);
const composeCli = findComposeCli();

let scratch: string;
/** .env as docker/init-env.sh writes it: .env.example with fresh secrets. */
let envFile: string;
let dotEnv: Env;
/** The Compose file with .env's values interpolated. */
let resolved: ComposeFile;
/** Each Dormouse service's configuration, from its environment and the image's. */
const configs = {} as Record<(typeof DORMOUSE_SERVICES)[number], Config>;

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'dormouse-compose-test-'));
  envFile = join(scratch, '.env');
  execFileSync('sh', [join(ROOT, 'docker/init-env.sh'), envFile], { encoding: 'utf8' });
  dotEnv = parseEnvFile(readFileSync(envFile, 'utf8'));
  resolved = interpolateDeep(raw, dotEnv);
  for (const name of DORMOUSE_SERVICES)
    configs[name] = loadConfig({ ...imageEnv, ...resolved.services[name]!.environment });
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('docker-compose.yml is a valid Compose file', () => {
  it('matches the compose-spec JSON schema', () => {
    const schema = JSON.parse(read('docker/compose-spec.schema.json')) as Record<string, unknown>;
    // Its $schema names draft-07 by an https URL Ajv does not know; Ajv's default is draft-07.
    delete schema.$schema;
    const ajv = new Ajv({ allErrors: true, allowUnionTypes: true, strictTypes: false });
    const validate = ajv.compile(schema);
    const valid = validate(raw);
    expect(valid, ajv.errorsText(validate.errors, { separator: '\n' })).toBe(true);

    // The schema is not vacuous: it rejects what Compose would.
    const broken = loadComposeRaw();
    (broken.services.worker!.deploy as Record<string, unknown>).replica = 3;
    broken.services.worker!.depends_on!.postgres!.condition = 'service_ready';
    expect(validate(broken)).toBe(false);
  });

  it.runIf(composeCli)(
    `passes \`${composeCli?.join(' ')} config\` with the secrets of .env, and refuses without them`,
    () => {
      const cli = composeCli!;
      // Only the env file feeds interpolation: none of this test process's DORMOUSE_* or TEMPORAL_*.
      const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? scratch };
      const run = (envFilePath: string) =>
        spawnSync(
          cli[0]!,
          [...cli.slice(1), '--env-file', envFilePath, '--project-directory', ROOT, '-f', COMPOSE_FILE, 'config', '-q'],
          {
            encoding: 'utf8',
            env,
            timeout: 60_000,
          },
        );
      const withSecrets = run(envFile);
      expect(withSecrets.status, withSecrets.stderr).toBe(0);
      const without = run(ENV_EXAMPLE);
      expect(without.status).not.toBe(0);
      expect(without.stderr).toMatch(/POSTGRES_PASSWORD|DORMOUSE_ADMIN_TOKEN|DORMOUSE_RUNNER_TOKEN/);
    },
  );
});

describe('docker-compose.yml configures Dormouse with the variables of src/config.ts', () => {
  it('gives the Dormouse services only settings of src/config.ts, each accepted by loadConfig', () => {
    const built = Object.entries(raw.services)
      .filter(([, s]) => s.build !== undefined)
      .map(([name]) => name);
    expect(built.sort()).toEqual([...DORMOUSE_SERVICES].sort());
    for (const name of DORMOUSE_SERVICES) {
      const environment = raw.services[name]!.environment;
      expect(environment, `${name}: environment must be a mapping`).toBeTypeOf('object');
      expect(Array.isArray(environment)).toBe(false);
      const unknown = Object.keys(environment!).filter((key) => !keys.has(key));
      expect(unknown, `${name} sets variables that src/config.ts does not read`).toEqual([]);
      expect(configs[name].mode).toBe('production');
    }
  });

  it('names only settings of src/config.ts wherever it interpolates DORMOUSE_*, TEMPORAL_* or DATABASE_URL', () => {
    const named = references(composeText).map((r) => r.name);
    expect(named.filter((name) => CONFIG_PREFIX.test(name) && !keys.has(name))).toEqual([]);
    // Other services may take TEMPORAL_* variables of Temporal's own (the server's
    // TEMPORAL_BROADCAST_ADDRESS); DORMOUSE_* and DATABASE_URL are Dormouse's wherever they are.
    for (const [name, service] of Object.entries(raw.services)) {
      const unknown = Object.keys(service.environment ?? {}).filter(
        (key) => /^(DORMOUSE_|DATABASE_URL$)/.test(key) && !keys.has(key),
      );
      expect(unknown, name).toEqual([]);
    }
    // `$NAME` without braces would escape these checks; the file does not use it.
    expect(composeText.replace(/\$\$|\$\{/g, '')).not.toMatch(/\$[A-Za-z_]/);
  });

  it('takes the image’s settings from src/config.ts too', () => {
    const unknown = Object.keys(imageEnv).filter((key) => CONFIG_PREFIX.test(key) && !keys.has(key));
    expect(unknown).toEqual([]);
    expect(imageEnv.DORMOUSE_WORKFLOW_BUNDLE).toBeDefined();
  });

  it('defaults an interpolated setting only to its default in src/config.ts', () => {
    const defaults = loadConfig({});
    for (const { name, operator, argument } of references(composeText)) {
      if (!keys.has(name) || !operator.includes('-')) continue;
      expect(loadConfig({ [name]: argument }), `\${${name}${operator}${argument}}`).toEqual(defaults);
    }
  });

  it('requires every secret and documents every variable in .env.example', () => {
    const refs = references(composeText);
    const required = new Set(refs.filter((r) => r.operator === ':?').map((r) => r.name));
    for (const secret of [
      'POSTGRES_PASSWORD',
      'DORMOUSE_ADMIN_TOKEN',
      'DORMOUSE_RUNNER_TOKENS',
      'DORMOUSE_RUNNER_TOKEN',
    ]) {
      expect(required, `${secret} must be \${${secret}:?...}: no default secret`).toContain(secret);
      expect(envExample[secret], `.env.example must list ${secret}, without a value`).toBe('');
    }
    // Nothing bare: a variable is either required or defaulted.
    expect(refs.filter((r) => r.operator === '').map((r) => r.name)).toEqual([]);
    // .env.example lists exactly the variables the file uses.
    expect(Object.keys(envExample).sort()).toEqual([...new Set(refs.map((r) => r.name))].sort());
    for (const [name, value] of Object.entries(envExample)) {
      if (!keys.has(name) || value === '') continue;
      expect(
        loadConfig({ [name]: value }),
        `.env.example: ${name}=${value} is not the default of src/config.ts`,
      ).toEqual(loadConfig({}));
    }
  });

  it('runs every gateway in production mode with its tokens, and the runner with its pool’s token', () => {
    const { runner } = configs;
    expect(runner.runner.token).toBeDefined();
    for (const name of GATEWAYS) {
      const gateway = configs[name];
      expect(() => requireGatewayTokens(gateway), name).not.toThrow();
      expect(gateway.auth.runnerTokens.get(runner.runner.pool), name).toBe(runner.runner.token);
      expect(gateway.auth.adminToken, name).not.toBe(dotEnv.POSTGRES_PASSWORD);
    }
    // docker/init-env.sh wrote the secrets: fresh, and fit for a URL.
    expect(dotEnv.POSTGRES_PASSWORD).toMatch(/^[0-9a-f]{48}$/);
  });

  it('connects each process to the services of this file', () => {
    const { worker, runner } = configs;
    const postgres = resolved.services.postgres!.environment!;
    for (const config of [worker, ...GATEWAYS.map((name) => configs[name])]) {
      const url = new URL(config.databaseUrl!);
      expect(url.hostname).toBe('postgres');
      expect(decodeURIComponent(url.username)).toBe(postgres.POSTGRES_USER);
      expect(decodeURIComponent(url.password)).toBe(postgres.POSTGRES_PASSWORD);
      expect(url.pathname).toBe(`/${postgres.POSTGRES_DB}`);
      expect(config.temporal.address).toBe('temporal:7233');
      expect(config.temporal.namespace).toBe(resolved.services['temporal-setup']!.environment!.TEMPORAL_NAMESPACE);
    }
    expect(resolved.services['temporal-setup']!.environment!.TEMPORAL_ADDRESS).toBe(worker.temporal.address);
    // Each gateway listens on every interface of its container, on the port it publishes and the
    // runners dial, and is reached at its own service name.
    for (const name of GATEWAYS) {
      const { gateway } = configs[name];
      expect(gateway.host, name).toBe('0.0.0.0');
      const published = resolved.services[name]!.ports!.map((p) => Number(p.split(':').at(-1)));
      expect(published, name).toContain(gateway.port);
      expect(gateway.url, name).toBe(`http://${name}:${gateway.port}`);
    }
    // The runner dials the first gateway, then the others (runner failover).
    const gatewayUrls = GATEWAYS.map((name) => configs[name].gateway.url);
    expect(runner.gateway.url).toBe(gatewayUrls[0]);
    expect(runner.runner.gatewayUrls).toEqual(gatewayUrls);
    // The Temporal server reads the same database settings as the schema one-shot.
    const temporalEnv = resolved.services.temporal!.environment!;
    const schemaEnv = resolved.services['temporal-schema']!.environment!;
    for (const key of Object.keys(schemaEnv)) expect(temporalEnv[key], key).toBe(schemaEnv[key]);
    expect(temporalEnv.POSTGRES_SEEDS).toBe('postgres');
    expect(temporalEnv.POSTGRES_USER).toBe(postgres.POSTGRES_USER);
    expect(temporalEnv.POSTGRES_PWD).toBe(postgres.POSTGRES_PASSWORD);
  });
});

describe('docker-compose.yml runs the fleet as the issue asks', () => {
  it('runs NATS and two gateways on it, each with an id, a URL and a host port of its own', () => {
    const nats = raw.services.nats!;
    expect(nats.image).toMatch(/^nats:\d+\.\d+\.\d+$/);
    // Every gateway joins the bus at the nats service's client port.
    for (const name of GATEWAYS) {
      expect(configs[name].gateway.natsServers, `${name}: DORMOUSE_NATS_URL`).toEqual(['nats://nats:4222']);
    }
    const unique = (values: unknown[]) => new Set(values).size === values.length;
    expect(unique(GATEWAYS.map((name) => configs[name].gateway.id))).toBe(true);
    expect(GATEWAYS.every((name) => configs[name].gateway.id !== undefined)).toBe(true);
    expect(unique(GATEWAYS.map((name) => configs[name].gateway.url))).toBe(true);
    const hostPorts = GATEWAYS.flatMap((name) => raw.services[name]!.ports!.map((p) => p.split(':').slice(-2)[0]));
    expect(hostPorts).toEqual(['6420', '6421']);
    // Its configuration: the client port the gateways dial, and messages as large as they send
    // (dev/nats-server.ts gives every NATS it starts the same limit).
    const configPath = nats.command![nats.command!.indexOf('--config') + 1]!;
    const config = readFileSync(join(ROOT, hostPathOf(nats, configPath)!), 'utf8');
    expect(config).toMatch(/^port: 4222$/m);
    expect(config).toMatch(new RegExp(`^max_payload: ${NATS_MAX_PAYLOAD}$`, 'm'));
  });

  it('runs three workers, stopped more patiently than their shutdown grace', () => {
    const worker = raw.services.worker!;
    expect(Number(worker.deploy?.replicas)).toBe(3);
    expect(worker.environment?.DORMOUSE_WORKER_SHUTDOWN_GRACE_MS, 'set explicitly').toBeDefined();
    expect(durationMs(worker.stop_grace_period!)).toBeGreaterThan(configs.worker.worker.shutdownGraceMs);
    expect(configs.worker.worker.metricsAddress).toBe('0.0.0.0:9464');
  });

  it('gives Temporal the queue poll limits of every dev server, and a history shard count sized for growth', () => {
    const dynamic = parseYaml(read('docker/temporal/dynamicconfig.yaml')) as Record<string, { value: unknown }[]>;
    for (const [key, value] of Object.entries(QUEUE_POLL_LIMITS)) expect(dynamic[key]?.[0]?.value, key).toBe(value);
    expect(Number(raw.services.temporal!.environment?.NUM_HISTORY_SHARDS)).toBeGreaterThanOrEqual(16);
  });

  it('registers exactly the search attributes of src/workflows/search-attributes.ts', () => {
    const args = raw.services['temporal-setup']!.command!;
    const registered = args.map((arg) => {
      const [name, type] = arg.split('=');
      return { name, type };
    });
    const expected = ACTOR_SEARCH_ATTRIBUTES.map(({ name, type }) => ({ name, type: CLI_TYPE_NAMES[type] }));
    expect(registered).toEqual(expected);
  });

  it('uses pinned Debian-based images (NATS: the official static binary) and never the deprecated auto-setup image', () => {
    const images = Object.entries(raw.services).map(([name, s]) => [name, s.image ?? ''] as const);
    for (const [name, image] of images) {
      expect(image, name).not.toMatch(/alpine/i);
      expect(image, name).not.toMatch(/temporalio\/auto-setup/);
      if (raw.services[name]!.build === undefined)
        expect(image, `${name}: pin an exact version`).toMatch(/:\d+\.\d+(\.\d+)?[^:]*$/);
    }
    expect(raw.services.temporal!.image).toMatch(/^temporalio\/server:\d+\.\d+\.\d+$/);
    const serverVersion = raw.services.temporal!.image!.split(':')[1]!;
    for (const oneShot of ['temporal-schema', 'temporal-setup']) {
      expect(raw.services[oneShot]!.image).toMatch(
        new RegExp(`^temporalio/admin-tools:${serverVersion.replace(/\./g, '\\.')}(-|$)`),
      );
    }
    expect(raw.services['temporal-ui']!.image).toMatch(/^temporalio\/ui:2\.\d+\.\d+$/);
    expect(raw.services.postgres!.image).toMatch(/^postgres:16\.\d+-bookworm$/);
    // The default variant of the official image: nats-server alone on scratch, no distribution.
    expect(raw.services.nats!.image).toMatch(/^nats:\d+\.\d+\.\d+$/);
  });

  it('builds a multi-stage image on Debian bookworm Node 20 that runs as a non-root user', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) expect(stage.from).toMatch(/^node:20\.\d+\.\d+-bookworm(-slim)?$/);
    const users = runtimeStage.instructions.filter((i) => i.keyword === 'USER').map((i) => i.args);
    expect(users.at(-1)).toBeDefined();
    expect(users.at(-1)).not.toMatch(/^(root|0)(:|$)/);
    // The postinstall (which pip-installs the Temporal CLI) never runs in the image.
    const installs = stages
      .flatMap((s) => s.instructions)
      .filter((i) => i.keyword === 'RUN' && /\bnpm (ci|install)\b/.test(i.args));
    expect(installs.length).toBeGreaterThan(0);
    for (const install of installs) expect(install.args).toMatch(/--ignore-scripts/);
  });

  it('builds the workflow bundle into the image at DORMOUSE_WORKFLOW_BUNDLE', () => {
    const runs = stages
      .flatMap((s) => s.instructions)
      .filter((i) => i.keyword === 'RUN')
      .map((i) => i.args);
    const out = runs.map((r) => /\bsrc\/workflow-bundle\.js\s+(\S+)/.exec(r)?.[1]).find((o) => o !== undefined);
    expect(out, 'a RUN of src/workflow-bundle.js').toBeDefined();
    const copied = runtimeStage.instructions.some((i) => i.keyword === 'COPY' && i.args.includes(`/app/${out}`));
    expect(copied, `the runtime stage copies /app/${out}`).toBe(true);
    expect(imageEnv.DORMOUSE_WORKFLOW_BUNDLE).toBe(`/app/${out}`);
  });

  it('orders start-up: PostgreSQL, the schema, Temporal, the namespace, then Dormouse', () => {
    const dependsOn = (name: string) =>
      Object.fromEntries(
        Object.entries(raw.services[name]!.depends_on ?? {}).map(([dep, { condition }]) => [dep, condition]),
      );
    expect(dependsOn('temporal-schema')).toEqual({ postgres: 'service_healthy' });
    expect(dependsOn('temporal')).toEqual({ 'temporal-schema': 'service_completed_successfully' });
    expect(dependsOn('temporal-setup')).toEqual({ temporal: 'service_healthy' });
    expect(dependsOn('temporal-ui')).toEqual({ temporal: 'service_healthy' });
    expect(dependsOn('worker')).toEqual({
      postgres: 'service_healthy',
      'temporal-setup': 'service_completed_successfully',
    });
    for (const name of GATEWAYS) {
      expect(dependsOn(name), name).toEqual({
        postgres: 'service_healthy',
        'temporal-setup': 'service_completed_successfully',
        nats: 'service_started',
      });
    }
    expect(dependsOn('runner')).toEqual({ gateway: 'service_healthy' });
    // What others wait on is fit for it: a health check, or a one-shot that is not restarted.
    for (const [name, service] of Object.entries(raw.services)) {
      for (const [dep, { condition }] of Object.entries(service.depends_on ?? {})) {
        if (condition === 'service_healthy')
          expect(raw.services[dep]!.healthcheck, `${dep} needs a healthcheck for ${name}`).toBeDefined();
        if (condition === 'service_completed_successfully') expect(raw.services[dep]!.restart, dep).toBe('no');
      }
    }
    expect(raw.services.postgres!.healthcheck!.test).toContain('pg_isready');
    expect(raw.services.temporal!.healthcheck!.test.join(' ')).toMatch(/temporal operator cluster health/);
  });

  it('refers only to files that exist, and the image gets every one it needs', () => {
    const missing: string[] = [];
    const expectFile = (path: string, why: string) => {
      if (!existsSync(join(ROOT, path))) missing.push(`${path} (${why})`);
    };
    for (const [name, service] of Object.entries(raw.services)) {
      for (const volume of service.volumes ?? []) {
        const source = volume.split(':')[0]!;
        if (source.startsWith('./')) expectFile(source.slice(2), `${name}: volume`);
      }
      const tokens = [...(service.entrypoint ?? []), ...(service.command ?? []), ...(service.healthcheck?.test ?? [])];
      for (const value of [...tokens, ...Object.values(service.environment ?? {})]) {
        if (typeof value !== 'string') continue;
        const onHost = value.startsWith('/') ? hostPathOf(service, value) : undefined;
        if (onHost) expectFile(onHost, `${name}: ${value}`);
        else if (service.build !== undefined && /^(src|examples|docker)\/\S+\.m?js$/.test(value)) {
          expectFile(sourceOf(value), `${name}: ${value}`);
          if (!inBuildContext(sourceOf(value)))
            missing.push(`${sourceOf(value)} (kept out of the build context by .dockerignore)`);
        }
      }
    }
    // The Dockerfile's sources, which .dockerignore must let in.
    for (const { keyword, args } of stages.flatMap((s) => s.instructions)) {
      if (keyword === 'COPY' && !args.startsWith('--from')) {
        for (const source of args.split(/\s+/).slice(0, -1)) {
          expectFile(source, `Dockerfile: COPY ${args}`);
          if (!inBuildContext(source)) missing.push(`${source} (COPY, but .dockerignore leaves it out)`);
        }
      }
      if (keyword === 'RUN' || keyword === 'CMD') {
        for (const m of args.matchAll(/(?:^|[\s"'[(])(?:\.\/)?((?:src|examples|docker)\/[\w./-]+)/g)) {
          const path = m[1]!.startsWith('docker/') ? m[1]! : sourceOf(m[1]!);
          if (!path.startsWith('dist/')) expectFile(path, `Dockerfile: ${keyword} ${args}`);
        }
      }
    }
    // The gateway's health check runs a script the image must contain.
    expect(
      runtimeStage.instructions.some((i) => i.keyword === 'COPY' && i.args.includes('docker/gateway-healthcheck.mjs')),
    ).toBe(true);
    expect(missing).toEqual([]);
    // The context is an allowlist: secrets and local state stay out.
    for (const path of [
      '.env',
      'node_modules/pg/package.json',
      '.git/config',
      '.tools/x',
      '.data/x',
      'test/docker-compose.test.ts',
      'src/worker.js',
    ]) {
      expect(inBuildContext(path), path).toBe(false);
    }
    for (const path of [
      'src/worker.ts',
      'src/db/migrations/1700000000000_init.sql',
      'examples/runner.ts',
      'package-lock.json',
    ]) {
      expect(inBuildContext(path), path).toBe(true);
    }
  });
});

describe('the scripts docker-compose.yml runs', () => {
  /** A directory with executable stand-ins, first on PATH. */
  function stubs(files: Record<string, string>): { dir: string; path: string } {
    const dir = mkdtempSync(join(scratch, 'stubs-'));
    for (const [name, text] of Object.entries(files)) {
      writeFileSync(join(dir, name), text);
      chmodSync(join(dir, name), 0o755);
    }
    return { dir, path: `${dir}:${process.env.PATH ?? ''}` };
  }

  /**
   * A stand-in for the Temporal CLI: logs each call, keeps the namespace and the search
   * attributes in files, and registers only the first of several --name flags, as CLI 1.9.1 does.
   */
  const FAKE_TEMPORAL = `#!/usr/bin/env node
const fs = require('node:fs');
const path = require('node:path');
const state = process.env.FAKE_STATE;
const args = process.argv.slice(2);
fs.appendFileSync(path.join(state, 'calls'), JSON.stringify(args) + '\\n');
const flag = (name) => { const i = args.indexOf(name); return i < 0 ? undefined : args[i + 1]; };
const attrsFile = path.join(state, 'attributes.json');
const attrs = fs.existsSync(attrsFile) ? JSON.parse(fs.readFileSync(attrsFile, 'utf8')) : {};
const cmd = args.slice(0, 3).join(' ');
const nsFile = path.join(state, 'namespace');
if (cmd.startsWith('operator cluster health')) {
  const n = Number(fs.existsSync(path.join(state, 'health')) ? fs.readFileSync(path.join(state, 'health'), 'utf8') : 0);
  fs.writeFileSync(path.join(state, 'health'), String(n + 1));
  if (n < 2) { console.error('connection refused'); process.exit(1); }
  console.log('SERVING');
} else if (cmd === 'operator namespace describe') {
  if (!fs.existsSync(nsFile)) { console.error('Namespace not found'); process.exit(1); }
} else if (cmd === 'operator namespace create') {
  fs.writeFileSync(nsFile, flag('--namespace'));
} else if (cmd === 'operator search-attribute list') {
  if (!fs.existsSync(nsFile)) { console.error('Namespace not found'); process.exit(1); }
  const custom = Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, 'INDEXED_VALUE_TYPE_' + v]));
  console.log(JSON.stringify({ systemAttributes: { WorkflowId: 'INDEXED_VALUE_TYPE_KEYWORD' }, customAttributes: custom }, null, 2));
} else if (cmd === 'operator search-attribute create') {
  attrs[flag('--name')] = flag('--type').toUpperCase();
  fs.writeFileSync(attrsFile, JSON.stringify(attrs));
} else { console.error('unexpected: ' + args.join(' ')); process.exit(3); }
`;

  function runSetupNamespace(state: string, stubPath: string, args: string[]) {
    const env = resolved.services['temporal-setup']!.environment!;
    return spawnSync('sh', [join(ROOT, 'docker/temporal/setup-namespace.sh'), ...args], {
      encoding: 'utf8',
      env: { ...env, PATH: stubPath, FAKE_STATE: state, SETUP_INTERVAL_SECONDS: '0' },
      timeout: 60_000,
    });
  }

  it('temporal-setup creates the namespace and registers each search attribute with a call of its own, idempotently', () => {
    const { path } = stubs({ temporal: FAKE_TEMPORAL });
    const state = mkdtempSync(join(scratch, 'temporal-'));
    const args = raw.services['temporal-setup']!.command!;
    const namespace = resolved.services['temporal-setup']!.environment!.TEMPORAL_NAMESPACE!;

    const first = runSetupNamespace(state, path, args);
    expect(first.status, first.stderr).toBe(0);
    expect(readFileSync(join(state, 'namespace'), 'utf8')).toBe(namespace);
    const attributes = JSON.parse(readFileSync(join(state, 'attributes.json'), 'utf8')) as Record<string, string>;
    expect(attributes).toEqual(Object.fromEntries(ACTOR_SEARCH_ATTRIBUTES.map(({ name, type }) => [name, type])));
    const calls = readFileSync(join(state, 'calls'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as string[]);
    const creates = calls.filter((c) => c.slice(0, 3).join(' ') === 'operator search-attribute create');
    expect(creates).toHaveLength(ACTOR_SEARCH_ATTRIBUTES.length);
    for (const create of creates) {
      expect(create.filter((a) => a === '--name')).toHaveLength(1);
      expect(create[create.indexOf('--namespace') + 1]).toBe(namespace);
    }

    // Again, on a set-up server: nothing to create, still success.
    writeFileSync(join(state, 'calls'), '');
    const second = runSetupNamespace(state, path, args);
    expect(second.status, second.stderr).toBe(0);
    expect(readFileSync(join(state, 'calls'), 'utf8')).not.toMatch(/"create"/);

    // An attribute registered with another type is an error, not silently kept.
    writeFileSync(join(state, 'attributes.json'), JSON.stringify({ ...attributes, ActorGeneration: 'KEYWORD' }));
    const conflicting = runSetupNamespace(state, path, args);
    expect(conflicting.status).toBe(1);
    expect(conflicting.stderr).toMatch(/ActorGeneration has type KEYWORD/);
  });

  /** A stand-in for temporal-sql-tool: logs each call; `create-database` fails for an existing database. */
  const FAKE_SQL_TOOL = `#!/usr/bin/env node
const fs = require('node:fs');
const path = require('node:path');
const state = process.env.FAKE_STATE;
const args = process.argv.slice(2);
fs.appendFileSync(path.join(state, 'calls'), JSON.stringify({ args, password: process.env.SQL_PASSWORD }) + '\\n');
const database = args[args.indexOf('--database') + 1];
if (args.includes('create-database')) {
  if (process.env.FAKE_CREATE_ERROR) { console.error(process.env.FAKE_CREATE_ERROR); process.exit(1); }
  const marker = path.join(state, 'db-' + database);
  if (fs.existsSync(marker)) { console.error('pq: database "' + database + '" already exists'); process.exit(1); }
  fs.writeFileSync(marker, '');
}
`;

  it('temporal-schema creates both databases and migrates them, and may run again', () => {
    const { path } = stubs({ 'temporal-sql-tool': FAKE_SQL_TOOL });
    const state = mkdtempSync(join(scratch, 'sql-'));
    const schemaDir = join(state, 'schema');
    for (const dir of ['temporal/versioned', 'visibility/versioned'])
      mkdirSync(join(schemaDir, dir), { recursive: true });
    const env = resolved.services['temporal-schema']!.environment!;
    const run = (extra: Env = {}) =>
      spawnSync('sh', [join(ROOT, 'docker/temporal/setup-schema.sh')], {
        encoding: 'utf8',
        env: { ...env, PATH: path, FAKE_STATE: state, TEMPORAL_SCHEMA_DIR: schemaDir, ...extra },
        timeout: 30_000,
      });
    const calls = () =>
      readFileSync(join(state, 'calls'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { args: string[]; password: string });

    const first = run();
    expect(first.status, first.stderr).toBe(0);
    const steps = calls().map(({ args }) => {
      const database = args[args.indexOf('--database') + 1];
      return `${database} ${args.slice(args.indexOf('--database') + 2).join(' ')}`;
    });
    expect(steps).toEqual([
      `${env.DBNAME} create-database`,
      `${env.DBNAME} setup-schema -v 0.0`,
      `${env.DBNAME} update-schema -d ${schemaDir}/temporal/versioned`,
      `${env.VISIBILITY_DBNAME} create-database`,
      `${env.VISIBILITY_DBNAME} setup-schema -v 0.0`,
      `${env.VISIBILITY_DBNAME} update-schema -d ${schemaDir}/visibility/versioned`,
    ]);
    for (const { args, password } of calls()) {
      expect(args.slice(0, 8)).toEqual([
        '--plugin',
        'postgres12',
        '--endpoint',
        'postgres',
        '--port',
        '5432',
        '--user',
        env.POSTGRES_USER,
      ]);
      expect(password).toBe(env.POSTGRES_PWD);
      expect(args).not.toContain(env.POSTGRES_PWD);
    }

    const again = run();
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/database temporal exists/);

    const failing = run({ FAKE_CREATE_ERROR: 'pq: password authentication failed for user "dormouse"' });
    expect(failing.status).toBe(1);
    expect(failing.stderr).toMatch(/password authentication failed/);
  });

  it('the gateway’s health check passes on a 2xx /healthz at the configured port only', async () => {
    let status = 200;
    const server: Server = createServer((req, res) => {
      res.statusCode = req.url === '/healthz' ? status : 404;
      res.end('{}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    // As in the image, but through tsx: here src/config.js is still src/config.ts.
    const check = (gatewayPort: number) =>
      new Promise<number | null>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'docker/gateway-healthcheck.mjs')], {
          cwd: ROOT,
          env: {
            PATH: process.env.PATH ?? '',
            DORMOUSE_GATEWAY_HOST: '0.0.0.0',
            DORMOUSE_GATEWAY_PORT: String(gatewayPort),
          },
          stdio: 'ignore',
        });
        child.on('exit', (code) => resolve(code));
      });
    try {
      expect(await check(port)).toBe(0);
      status = 503;
      expect(await check(port)).toBe(1);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    // Nothing listening.
    expect(await check(port)).toBe(1);
  });
});
