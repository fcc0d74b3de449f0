/**
 * The one typed configuration module. Every setting has the default of DESIGN §7 and can be
 * overridden by an environment variable; nothing else in `src/` reads the environment (the
 * toolchain's TEMPORAL_CLI lookup in dev/temporal-cli.ts aside).
 */
import { z } from 'zod';
import { DEFAULT_PING_INTERVAL_MS, RUNNER_DEFAULTS, actorName } from './protocol/runner-protocol.js';

const ms = (fallback: number) => z.coerce.number().int().positive().default(fallback);
const SECOND = 1000;
const MINUTE = 60 * SECOND;

const envSchema = z.object({
  DATABASE_URL: z.string().min(1).optional(),
  TEMPORAL_ADDRESS: z.string().min(1).optional(),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  DORMOUSE_TASK_QUEUE: z.string().min(1).default('dormouse'),
  DORMOUSE_LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** `development` lets the gateway run without tokens; anything else requires them. */
  DORMOUSE_MODE: z.enum(['development', 'production']).default('production'),
  /** The management API requires `Authorization: Bearer <token>` when set. */
  DORMOUSE_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  /** Gateway side: `pool=token,pool2=token2`; a runner of a pool must present its pool's token. */
  DORMOUSE_RUNNER_TOKENS: z.string().min(1).optional(),
  /**
   * Gateway side: `pool=name1|name2,pool2=name3`, the actor names each pool's runners may host
   * (DESIGN §6). When set, a hello naming any other actor type is refused, and a pool not listed
   * may host nothing; when unset, a runner may host any actor type.
   */
  DORMOUSE_POOL_ACTORS: z.string().min(1).optional(),
  /** Gateway side: the most actors one runner is given; a hello asking for more is clamped to it. */
  DORMOUSE_RUNNER_MAX_CAPACITY: z.coerce.number().int().positive().default(10_000),
  /**
   * Runner side: the gateways it may connect to, comma-separated base URLs, tried in order (the
   * next one when its gateway goes away, DESIGN §2.1). Unset: DORMOUSE_GATEWAY_URL alone.
   */
  DORMOUSE_RUNNER_GATEWAY_URLS: z
    .string()
    .refine(
      (v) => v.split(',').every((u) => z.url({ protocol: /^https?$/ }).safeParse(u.trim()).success),
      'must be comma-separated http(s) URLs',
    )
    .optional(),
  /** Runner side: the token it presents on /runners/connect. */
  DORMOUSE_RUNNER_TOKEN: z.string().min(1).optional(),
  /** Worker side: `host:port` for the Temporal SDK's Prometheus exporter; off when unset. */
  DORMOUSE_WORKER_METRICS_ADDRESS: z
    .string()
    .regex(/^[^:]+:\d+$/, 'must be host:port')
    .optional(),

  DORMOUSE_GATEWAY_HOST: z.string().min(1).default('127.0.0.1'),
  DORMOUSE_GATEWAY_PORT: z.coerce.number().int().min(0).max(65535).default(6420),
  /** Where runners and clients reach the gateway; derived from host and port when unset. */
  DORMOUSE_GATEWAY_URL: z.string().url().optional(),
  DORMOUSE_GATEWAY_ID: z.string().min(1).optional(),
  /**
   * Gateway side: the NATS server every gateway joins to reach the runners and clients of the
   * others (DESIGN §2.1), e.g. `nats://127.0.0.1:4222`. Unset: one gateway, frames stay in process.
   */
  DORMOUSE_NATS_URL: z
    .string()
    .regex(
      /^(nats|tls):\/\/[^\s,]+(,(nats|tls):\/\/[^\s,]+)*$/,
      'must be nats://host:port (comma-separated for several)',
    )
    .optional(),
  /** Largest management-API or tunnelled HTTP body. */
  DORMOUSE_MAX_BODY_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(1024 * 1024),
  /** Largest client WebSocket message; bigger ones close the socket with 1009. */
  DORMOUSE_MAX_MESSAGE_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(1024 * 1024),
  /** How long a tunnelled HTTP request waits for its actor to answer. */
  DORMOUSE_REQUEST_TIMEOUT_MS: ms(60 * SECOND),

  DORMOUSE_HIBERNATION_THRESHOLD_MS: ms(90 * SECOND),
  DORMOUSE_START_THRESHOLD_MS: ms(30 * SECOND),
  DORMOUSE_STOP_THRESHOLD_MS: ms(5 * MINUTE),
  DORMOUSE_RUNNER_PING_MS: ms(DEFAULT_PING_INTERVAL_MS),
  DORMOUSE_RUNNER_LOST_MS: ms(15 * SECOND),
  DORMOUSE_WAKE_TIMEOUT_MS: ms(90 * SECOND),
  DORMOUSE_ACK_TIMEOUT_MS: ms(30 * SECOND),
  /**
   * How long a resumable session (H10) whose socket was lost may be resumed, on any gateway; past
   * it the actor hears that the connection closed. What the client missed meanwhile waits in the
   * actor's outbox, within its bounds (DEFAULT_OUTBOX_LIMITS).
   */
  DORMOUSE_SESSION_RETENTION_MS: ms(60 * SECOND),
  DORMOUSE_PENDING_FRAMES: z.coerce.number().int().positive().default(65_535),
  DORMOUSE_PENDING_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(128 * 1024 * 1024),
  /**
   * Hibernatable sockets one actor may have (over all gateways); the actor accepting one more is
   * overruled and the client closed with 4429. A start's snapshot lists them all and travels in
   * Temporal payloads, limited to 2 MB: one entry is about 100 bytes of JSON plus the gateway id
   * (`{"gatewayId":"…","requestId":"<36>"}`), so 10 000 of them take about 1 MB, leaving room for
   * the rest of the payload (and for gateway ids up to ~50 characters).
   */
  DORMOUSE_MAX_HIBERNATABLE_PER_ACTOR: z.coerce.number().int().positive().default(10_000),
  /**
   * Bytes of client messages one gateway keeps for actors that have not acknowledged them, over
   * all its sockets; past it the gateway stops reading from its clients until it is under half.
   */
  DORMOUSE_GATEWAY_PENDING_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(512 * 1024 * 1024),
  /** Output buffered for one client that does not read it; past it the client is closed with 4408. */
  DORMOUSE_MAX_BUFFERED_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(16 * 1024 * 1024),
  /**
   * The shortest time between two wake signals the gateway sends one actor (each is a history
   * event). Wakes already go out at most once per state change of the actor, so this only caps a
   * pathological loop (≤ 10 signals a second); it must stay below a real sleep-to-wake cycle, or
   * it delays legitimate wakes (1 s added ~600 ms to the wake benchmark's median).
   */
  DORMOUSE_WAKE_MIN_INTERVAL_MS: ms(100),
  DORMOUSE_BACKOFF_BASE_MS: ms(2 * SECOND),
  DORMOUSE_BACKOFF_MAX_EXPONENT: z.coerce.number().int().min(0).max(20).default(8),
  DORMOUSE_BACKOFF_RESET_MS: ms(10 * MINUTE),
  /** Idle time before an actor rests in place (DESIGN §4.1); its type and its input may say otherwise. */
  DORMOUSE_REST_AFTER_MS: ms(RUNNER_DEFAULTS.restAfterMs),
  DORMOUSE_SLEEP_AFTER_MS: ms(RUNNER_DEFAULTS.sleepAfterMs),
  DORMOUSE_REAPER_INTERVAL_MS: ms(5 * SECOND),
  /** Acknowledged commands are kept this long (for audit and idempotent retries), then trimmed. */
  DORMOUSE_COMMAND_RETENTION_MS: ms(10 * MINUTE),

  /** Runner side: which pool it joins, how many actors it hosts. */
  DORMOUSE_RUNNER_POOL: z.string().min(1).default(RUNNER_DEFAULTS.pool),
  DORMOUSE_RUNNER_CAPACITY: z.coerce.number().int().positive().default(RUNNER_DEFAULTS.capacity),
  /** Bytes of resting actors' states a runner keeps for their wakes (0: none; every wake reads its state). */
  DORMOUSE_RUNNER_REST_CACHE_BYTES: z.coerce.number().int().nonnegative().default(RUNNER_DEFAULTS.restCacheBytes),
  /** Worker side: a prebuilt workflow bundle (see src/workflow-bundle.ts). */
  DORMOUSE_WORKFLOW_BUNDLE: z.string().min(1).optional(),
  DORMOUSE_WORKER_SHUTDOWN_GRACE_MS: ms(10 * SECOND),
});

/** Every environment variable Dormouse reads (the Docker fleet's test checks its files against it). */
export const CONFIG_ENV_KEYS: readonly string[] = Object.keys(envSchema.shape);

export interface Timing {
  hibernationThresholdMs: number;
  gatewayHeartbeatMs: number;
  startThresholdMs: number;
  stopThresholdMs: number;
  runnerPingMs: number;
  runnerLostMs: number;
  wakeTimeoutMs: number;
  ackTimeoutMs: number;
  sessionRetentionMs: number;
  backoffBaseMs: number;
  backoffMaxExponent: number;
  backoffResetMs: number;
  restAfterMs: number;
  sleepAfterMs: number;
  reaperIntervalMs: number;
  commandRetentionMs: number;
}

export interface Config {
  mode: 'development' | 'production';
  databaseUrl: string | undefined;
  temporal: {
    address: string;
    /** True when TEMPORAL_ADDRESS was given: the dev stack then uses that server instead of starting one. */
    addressGiven: boolean;
    namespace: string;
    taskQueue: string;
  };
  logLevel: z.infer<typeof envSchema>['DORMOUSE_LOG_LEVEL'];
  gateway: {
    host: string;
    port: number;
    url: string;
    id: string | undefined;
    /** The NATS servers of the gateway bus; undefined: a single gateway (DESIGN §2.1). */
    natsServers: string[] | undefined;
    maxBodyBytes: number;
    maxMessageBytes: number;
    requestTimeoutMs: number;
    pendingFrames: number;
    pendingBytes: number;
    maxHibernatablePerActor: number;
    gatewayPendingBytes: number;
    maxBufferedBytes: number;
    wakeMinIntervalMs: number;
    runnerMaxCapacity: number;
  };
  runner: { pool: string; capacity: number; restCacheBytes: number; token: string | undefined; gatewayUrls: string[] };
  worker: { workflowBundle: string | undefined; shutdownGraceMs: number; metricsAddress: string | undefined };
  auth: {
    adminToken: string | undefined;
    /** Pool name → the token its runners must present. */
    runnerTokens: ReadonlyMap<string, string>;
    /** Pool name → the actor names its runners may host; undefined: any (DORMOUSE_POOL_ACTORS unset). */
    poolActors: ReadonlyMap<string, ReadonlySet<string>> | undefined;
  };
  timing: Timing;
}

export class ConfigError extends Error {}

/** Reads the configuration from an environment (by default the process's). Throws ConfigError. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable (what `${VAR:-}` gives in compose files) means unset.
  const parsed = envSchema.safeParse(Object.fromEntries(Object.entries(env).filter(([, value]) => value !== '')));
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid configuration: ${problems}`);
  }
  const e = parsed.data;
  const gatewayUrl = e.DORMOUSE_GATEWAY_URL ?? `http://${e.DORMOUSE_GATEWAY_HOST}:${e.DORMOUSE_GATEWAY_PORT}`;
  return {
    mode: e.DORMOUSE_MODE,
    databaseUrl: e.DATABASE_URL,
    temporal: {
      address: e.TEMPORAL_ADDRESS ?? 'localhost:7233',
      addressGiven: e.TEMPORAL_ADDRESS !== undefined,
      namespace: e.TEMPORAL_NAMESPACE,
      taskQueue: e.DORMOUSE_TASK_QUEUE,
    },
    logLevel: e.DORMOUSE_LOG_LEVEL,
    gateway: {
      host: e.DORMOUSE_GATEWAY_HOST,
      port: e.DORMOUSE_GATEWAY_PORT,
      url: gatewayUrl,
      id: e.DORMOUSE_GATEWAY_ID,
      natsServers: e.DORMOUSE_NATS_URL?.split(','),
      maxBodyBytes: e.DORMOUSE_MAX_BODY_BYTES,
      maxMessageBytes: e.DORMOUSE_MAX_MESSAGE_BYTES,
      requestTimeoutMs: e.DORMOUSE_REQUEST_TIMEOUT_MS,
      pendingFrames: e.DORMOUSE_PENDING_FRAMES,
      pendingBytes: e.DORMOUSE_PENDING_BYTES,
      maxHibernatablePerActor: e.DORMOUSE_MAX_HIBERNATABLE_PER_ACTOR,
      gatewayPendingBytes: e.DORMOUSE_GATEWAY_PENDING_BYTES,
      maxBufferedBytes: e.DORMOUSE_MAX_BUFFERED_BYTES,
      wakeMinIntervalMs: e.DORMOUSE_WAKE_MIN_INTERVAL_MS,
      runnerMaxCapacity: e.DORMOUSE_RUNNER_MAX_CAPACITY,
    },
    runner: {
      pool: e.DORMOUSE_RUNNER_POOL,
      capacity: e.DORMOUSE_RUNNER_CAPACITY,
      restCacheBytes: e.DORMOUSE_RUNNER_REST_CACHE_BYTES,
      token: e.DORMOUSE_RUNNER_TOKEN,
      gatewayUrls: e.DORMOUSE_RUNNER_GATEWAY_URLS?.split(',').map((u) => u.trim()) ?? [gatewayUrl],
    },
    worker: {
      workflowBundle: e.DORMOUSE_WORKFLOW_BUNDLE,
      shutdownGraceMs: e.DORMOUSE_WORKER_SHUTDOWN_GRACE_MS,
      metricsAddress: e.DORMOUSE_WORKER_METRICS_ADDRESS,
    },
    auth: {
      adminToken: e.DORMOUSE_ADMIN_TOKEN,
      runnerTokens: parseRunnerTokens(e.DORMOUSE_RUNNER_TOKENS),
      poolActors: e.DORMOUSE_POOL_ACTORS === undefined ? undefined : parsePoolActors(e.DORMOUSE_POOL_ACTORS),
    },
    timing: {
      hibernationThresholdMs: e.DORMOUSE_HIBERNATION_THRESHOLD_MS,
      gatewayHeartbeatMs: Math.floor(e.DORMOUSE_HIBERNATION_THRESHOLD_MS / 2),
      startThresholdMs: e.DORMOUSE_START_THRESHOLD_MS,
      stopThresholdMs: e.DORMOUSE_STOP_THRESHOLD_MS,
      runnerPingMs: e.DORMOUSE_RUNNER_PING_MS,
      runnerLostMs: e.DORMOUSE_RUNNER_LOST_MS,
      wakeTimeoutMs: e.DORMOUSE_WAKE_TIMEOUT_MS,
      ackTimeoutMs: e.DORMOUSE_ACK_TIMEOUT_MS,
      sessionRetentionMs: e.DORMOUSE_SESSION_RETENTION_MS,
      backoffBaseMs: e.DORMOUSE_BACKOFF_BASE_MS,
      backoffMaxExponent: e.DORMOUSE_BACKOFF_MAX_EXPONENT,
      backoffResetMs: e.DORMOUSE_BACKOFF_RESET_MS,
      restAfterMs: e.DORMOUSE_REST_AFTER_MS,
      sleepAfterMs: e.DORMOUSE_SLEEP_AFTER_MS,
      reaperIntervalMs: e.DORMOUSE_REAPER_INTERVAL_MS,
      commandRetentionMs: e.DORMOUSE_COMMAND_RETENTION_MS,
    },
  };
}

/** `pool=token,pool2=token2` → map; a malformed entry is a configuration error. */
function parseRunnerTokens(value: string | undefined): ReadonlyMap<string, string> {
  const tokens = new Map<string, string>();
  for (const entry of value ? value.split(',') : []) {
    const [pool, token, ...rest] = entry.trim().split('=');
    if (!pool || !token || rest.length > 0)
      throw new ConfigError('invalid configuration: DORMOUSE_RUNNER_TOKENS: expected pool=token,pool2=token2');
    tokens.set(pool, token);
  }
  return tokens;
}

/** `pool=name1|name2,pool2=name3` → map; a malformed entry or actor name is a configuration error. */
function parsePoolActors(value: string): ReadonlyMap<string, ReadonlySet<string>> {
  const pools = new Map<string, ReadonlySet<string>>();
  for (const entry of value.split(',')) {
    const [pool, names, ...rest] = entry.trim().split('=');
    const list = names?.split('|') ?? [];
    if (!pool || rest.length > 0 || list.length === 0 || !list.every((n) => actorName.safeParse(n).success))
      throw new ConfigError('invalid configuration: DORMOUSE_POOL_ACTORS: expected pool=name1|name2,pool2=name3');
    pools.set(pool, new Set(list));
  }
  return pools;
}

/**
 * Outside development mode the gateway runs only with its tokens: an open management API or
 * runner endpoint is a configuration error, not a default.
 */
export function requireGatewayTokens(config: Config): void {
  if (config.mode === 'development') return;
  const missing = [
    config.auth.adminToken ? null : 'DORMOUSE_ADMIN_TOKEN',
    config.auth.runnerTokens.size > 0 ? null : 'DORMOUSE_RUNNER_TOKENS',
  ].filter((name) => name !== null);
  if (missing.length > 0) {
    throw new ConfigError(
      `${missing.join(' and ')} must be set outside development mode (or set DORMOUSE_MODE=development)`,
    );
  }
}
