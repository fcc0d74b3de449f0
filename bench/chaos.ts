/**
 * `npm run chaos -- --seed S --duration SECONDS`: the proof of DESIGN §5 H6 and H9 under faults
 * (issue 8 §4). Starts a real stack (two workers, the gateway, three runners hosting the demo
 * `chat`), drives chat clients that send numbered texts and check every broadcast, and injects
 * faults chosen from the seed, letting the system settle and checking after each. Prints one
 * JSON line on stdout; progress goes to stderr. Exit codes: 0 nothing lost, doubled or reordered,
 * 1 a counter is not 0 (or the run failed), 2 bad usage, 130 interrupted.
 *
 * Inbound (H6): every text a client sent must be broadcast exactly once (one `seq`). Outbound
 * (H9): every client whose socket stayed open must see the room's `seq` values once each, rising
 * by one. With one gateway, a gateway kill closes its clients: they are counted apart
 * (gateway_closed_clients), the texts they sent last may be unknown (unknown_inbound, not a
 * failure), and they reconnect as new clients. Any other close is an unexpected close.
 *
 * `--gateways N` (N ≥ 2, DESIGN §2.1 and H10): N gateways share a NATS server, and every client is
 * a resumable session (the client SDK's ResumableSocket) that knows every gateway. A gateway kill
 * then closes nobody: its clients resume on another gateway (counted as resumed_sessions) and are
 * held to exactly-once both ways like everyone else; `nats_restart` restarts the bus under them.
 */
import { readFile } from 'node:fs/promises';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import pg from 'pg';
import WebSocket from 'ws';
import { startLocalStack, type LocalStack } from '../dev/local-stack.js';
import { prettyLogger } from '../dev/pretty-log.js';
import type { NodeProcess } from '../dev/processes.js';
import { onShutdownSignal } from '../dev/shutdown-signal.js';
import { waitFor, WaitTimeoutError } from '../dev/wait.js';
import { ResumableSocket } from '../src/client/index.js';
import { loadConfig } from '../src/config.js';
import { errorMessage } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import { wsText } from '../src/util/ws-data.js';
import { runIfEntryScript } from '../src/process-entry.js';

const FAULT_KINDS = [
  'runner_kill',
  'runner_stop',
  'worker_kill',
  'gateway_kill',
  'temporal_restart',
  'postgres_restart',
  'listen_terminate',
  'storm',
  'nats_restart',
] as const;
type FaultKind = (typeof FAULT_KINDS)[number];

/**
 * Shorter timings than the defaults (DESIGN §7) so that a fault resolves within seconds; printed
 * in the output line. The lost threshold decides how long a SIGSTOPped runner is held.
 */
const STACK_ENV = {
  DORMOUSE_RUNNER_PING_MS: '1000',
  DORMOUSE_RUNNER_LOST_MS: '4000',
  // Repeated crashes of one room must not back off for minutes within a short run.
  DORMOUSE_BACKOFF_BASE_MS: '250',
  DORMOUSE_BACKOFF_MAX_EXPONENT: '4',
  DORMOUSE_REAPER_INTERVAL_MS: '1000',
} as const;

/** Past the lost threshold before a SIGSTOPped runner gets SIGCONT. */
const STOP_PAST_LOST_MS = 2_000;
/** How long the system may take to deliver what was sent before a settle point. */
const SETTLE_TIMEOUT_MS = 90_000;
const FINAL_TIMEOUT_MS = 120_000;
const HTTP_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 30_000;
/** How long the chaos retries its own requests and connects while a fault resolves. */
const RECOVERY_TIMEOUT_MS = 60_000;
const EXIT_FAILED = 1;
const USAGE_ERROR = 2;
const INTERRUPTED = 130;

interface ChaosFlags {
  seed: number;
  duration: number;
  rooms: number;
  clients: number;
  intervalMs: number;
  faults: FaultKind[] | undefined;
  gateways: number;
}

interface Broadcast {
  seq: number;
  text: string;
}

/** Why a client's socket closed, as far as the chaos knows. */
type CloseCause = 'gateway_kill' | 'unexpected' | 'end';

/** What a chaos client hears from its socket. */
interface SocketEvents {
  receive(text: string): void;
  /** Closed for good (a resumable session only once it gave up resuming). */
  lost(code: number): void;
  /** The session resumed after its socket or gateway died (resumable sessions only). */
  resumed(): void;
}

/** A chat client's socket: a plain WebSocket to one gateway, or a resumable session over several. */
interface ChatSocket {
  /** Whether a text sent now is kept until the actor has it. */
  readonly writable: boolean;
  send(text: string): void;
  close(): void;
}

/** Opens the socket of client `name` to the room `actorId`, resolving once it is open. */
type OpenSocket = (actorId: string, name: string, events: SocketEvents) => Promise<ChatSocket>;

/** One gateway: a plain WebSocket, closed for good when its gateway dies. */
function plainSocket(gatewayUrl: string): OpenSocket {
  return async (actorId, name, events) => {
    const ws = new WebSocket(`${gatewayUrl.replace(/^http/, 'ws')}/actors/${actorId}/ws?name=${name}`);
    let opened = false;
    ws.once('open', () => (opened = true));
    ws.on('message', (data) => events.receive(wsText(data)));
    // A socket that never opened is a failed connect, not a close.
    ws.on('close', (code) => opened && events.lost(code));
    ws.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`client ${name} did not open`)), CONNECT_TIMEOUT_MS);
      ws.once('open', () => (clearTimeout(timer), resolve()));
      ws.once('close', () => (clearTimeout(timer), reject(new Error(`client ${name} closed before it opened`))));
    });
    return {
      // A plain socket drops what is sent while it is not open: not sending then keeps the count honest.
      get writable() {
        return ws.readyState === WebSocket.OPEN;
      },
      send: (text) => ws.send(text),
      close: () => ws.close(1000),
    };
  };
}

/**
 * Several gateways: a resumable session (H10) that knows them all, starting at `gatewaysFor`'s
 * first, so that clients spread over the gateways and each resumes on the next one in turn.
 */
function resumableSocket(gatewaysFor: () => string[]): OpenSocket {
  return async (actorId, name, events) => {
    const socket = await ResumableSocket.open({
      gateways: gatewaysFor(),
      actorId,
      path: `?name=${name}`,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      // The gateways' retention of a lost session (DORMOUSE_SESSION_RETENTION_MS) bounds it anyway.
      resumeWithinMs: RECOVERY_TIMEOUT_MS,
    });
    socket.on('message', (data) => events.receive(typeof data === 'string' ? data : data.toString('utf8')));
    socket.on('resumed', () => events.resumed());
    let closed = false;
    socket.on('close', (code) => ((closed = true), events.lost(code)));
    return {
      // The session keeps what is sent while it resumes, and resends it: sending on tests that.
      get writable() {
        return !closed;
      },
      send: (text) => socket.send(text),
      close: () => void socket.close(),
    };
  };
}

/** One chat client (one socket or session): sends `<id>:<n>` texts and records every broadcast it hears. */
class ChaosClient implements SocketEvents {
  readonly sent: string[] = [];
  readonly heard: Broadcast[] = [];
  /** Set by the chaos before it causes the close; a close without it is unexpected. */
  expectedClose: CloseCause | null = null;
  closedWith: { code: number; cause: CloseCause } | null = null;
  /** How often its session resumed on another socket. */
  resumes = 0;
  private timer: NodeJS.Timeout | undefined;
  private socket!: ChatSocket;

  private constructor(
    readonly id: string,
    private readonly onClose: (client: ChaosClient) => void,
  ) {}

  static async connect(
    open: OpenSocket,
    actorId: string,
    id: string,
    onClose: (client: ChaosClient) => void,
  ): Promise<ChaosClient> {
    const client = new ChaosClient(id, onClose);
    client.socket = await open(actorId, id, client);
    return client;
  }

  get open(): boolean {
    return this.closedWith === null;
  }

  /** Open until the run closed it at the end. */
  get stayedOpen(): boolean {
    return this.closedWith === null || this.closedWith.cause === 'end';
  }

  get lastSeq(): number {
    return this.heard.at(-1)?.seq ?? 0;
  }

  startSending(intervalMs: number): void {
    this.timer = setInterval(() => {
      if (!this.socket.writable) return;
      const text = `${this.id}:${this.sent.length + 1}`;
      this.sent.push(text);
      this.socket.send(text);
    }, intervalMs);
  }

  stopSending(): void {
    clearInterval(this.timer);
  }

  close(): void {
    this.expectedClose ??= 'end';
    this.socket.close();
  }

  receive(data: string): void {
    const message = JSON.parse(data) as { seq?: unknown; text?: unknown };
    if (typeof message.seq !== 'number' || typeof message.text !== 'string')
      throw new Error(`client ${this.id}: not a chat broadcast: ${data}`);
    this.heard.push({ seq: message.seq, text: message.text });
  }

  resumed(): void {
    this.resumes++;
  }

  lost(code: number): void {
    clearInterval(this.timer);
    this.closedWith = { code, cause: this.expectedClose ?? 'unexpected' };
    this.onClose(this);
  }
}

/** One `chat` actor and every client that ever connected to it. */
interface Room {
  index: number;
  actorId: string;
  clients: ChaosClient[];
  /** The client connects under way, one at a time so that concurrent refills do not overfill. */
  filling: Promise<void>;
  /** The room's `seq` after the final settle (its state, read over HTTP). */
  finalSeq?: number;
}

interface Counters {
  lost_inbound: number;
  duplicated_inbound: number;
  lost_outbound: number;
  duplicated_outbound: number;
  out_of_order: number;
  unexpected_closes: number;
  /** One seq broadcast with two different texts: the room's history forked. */
  forked_seq: number;
  /** Stack processes that exited without the chaos killing them. */
  unexpected_exits: number;
  /** Settle points at which not everything sent had arrived within SETTLE_TIMEOUT_MS. */
  settle_timeouts: number;
}

/** What the output line reports besides its settings. */
type ChaosResult = { messages: number } & Counters & {
    gateway_closed_clients: number;
    unknown_inbound: number;
    /** Resumes of clients' sessions after their socket or gateway died (several gateways). */
    resumed_sessions: number;
  };

/** The counters that fail a run when not 0 (the chaos test checks the same ones). */
export const FAILING: readonly (keyof Counters)[] = [
  'lost_inbound',
  'duplicated_inbound',
  'lost_outbound',
  'duplicated_outbound',
  'out_of_order',
  'unexpected_closes',
  'forked_seq',
  'unexpected_exits',
  'settle_timeouts',
];

/** mulberry32: a small seeded generator, so that a seed replays the same choice of faults. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Chaos {
  readonly faults: Record<FaultKind, number>;
  private readonly rooms: Room[] = [];
  private readonly random: () => number;
  private gatewayClosedClients = 0;
  private unexpectedExits = 0;
  private settleTimeouts = 0;
  /** Processes the chaos is killing or stopping: their exit is expected. */
  private readonly expectedExit = new Set<NodeProcess>();
  private clientCounter = 0;
  private ending = false;
  private readonly openSocket: OpenSocket;
  /** Spreads the chaos's own requests over the gateways (a dead one is retried on the next). */
  private requestCounter = 0;

  constructor(
    private readonly stack: LocalStack,
    private readonly flags: ChaosFlags,
    private readonly enabled: readonly FaultKind[],
    private readonly log: Logger,
    private readonly signal: AbortSignal,
  ) {
    this.random = seededRandom(flags.seed);
    this.faults = Object.fromEntries(enabled.map((kind) => [kind, 0])) as Record<FaultKind, number>;
    const urls = stack.gatewayUrls;
    this.openSocket =
      urls.length === 1
        ? plainSocket(stack.gatewayUrl)
        : resumableSocket(() => rotated(urls, this.clientCounter % urls.length));
    for (const proc of this.allProcesses()) this.watchExit(proc);
  }

  async run(): Promise<void> {
    for (let i = 0; i < this.flags.rooms; i++) {
      const response = await this.request('POST', '/actors', { name: 'chat', key: `chaos-${this.flags.seed}-${i}` });
      const { actor } = (await response.json()) as { actor: { actorId: string } };
      this.rooms.push({ index: i, actorId: actor.actorId, clients: [], filling: Promise.resolve() });
    }
    for (const room of this.rooms) await this.fillRoom(room);
    const deadline = Date.now() + this.flags.duration * 1000;
    // Traffic first: the first settle point then checks a few texts per client.
    await this.pause(this.flags.intervalMs * 4);
    await this.settle('start');
    while (Date.now() < deadline) {
      this.signal.throwIfAborted();
      await this.refill();
      const kind = this.enabled[Math.floor(this.random() * this.enabled.length)]!;
      this.faults[kind]++;
      this.log.info({ fault: kind, n: this.faults[kind] }, 'injecting');
      await this.inject(kind);
      await this.settle(kind);
    }
    this.ending = true;
    for (const client of this.openClients()) client.stopSending();
    await this.settle('end', FINAL_TIMEOUT_MS);
    for (const room of this.rooms) {
      const response = await this.request('GET', `/actors/${room.actorId}/http/state`);
      room.finalSeq = ((await response.json()) as { seq: number }).seq;
    }
  }

  /** The counters, in the order of the output line (issue 8 §4). */
  result(): ChaosResult {
    const counters: Counters = {
      lost_inbound: 0,
      duplicated_inbound: 0,
      lost_outbound: 0,
      duplicated_outbound: 0,
      out_of_order: 0,
      unexpected_closes: 0,
      forked_seq: 0,
      unexpected_exits: this.unexpectedExits,
      settle_timeouts: this.settleTimeouts,
    };
    let messages = 0;
    let unknown = 0;
    let resumed = 0;
    for (const room of this.rooms) {
      const seqsOf = new Map<string, Set<number>>();
      const textOf = new Map<number, Set<string>>();
      for (const client of room.clients) {
        for (const { seq, text } of client.heard) {
          getOrAdd(seqsOf, text).add(seq);
          getOrAdd(textOf, seq).add(text);
        }
      }
      for (const seqs of seqsOf.values()) counters.duplicated_inbound += seqs.size - 1;
      for (const texts of textOf.values()) counters.forked_seq += texts.size - 1;
      for (const client of room.clients) {
        messages += client.sent.length;
        resumed += client.resumes;
        const missing = client.sent.filter((text) => !seqsOf.has(text)).length;
        // A socket the chaos closed may have lost its last texts with the gateway: unknown.
        if (client.closedWith?.cause === 'gateway_kill') unknown += missing;
        else counters.lost_inbound += missing;
        if (client.closedWith?.cause === 'unexpected') counters.unexpected_closes++;
        if (client.closedWith?.cause !== 'gateway_kill') addOutbound(counters, client.heard);
        // Open to the end: it must have heard the room's last broadcast too.
        if (client.stayedOpen && room.finalSeq !== undefined && client.heard.length > 0)
          counters.lost_outbound += Math.max(0, room.finalSeq - client.lastSeq);
      }
    }
    return {
      messages,
      ...counters,
      gateway_closed_clients: this.gatewayClosedClients,
      unknown_inbound: unknown,
      resumed_sessions: resumed,
    };
  }

  async close(): Promise<void> {
    this.ending = true;
    for (const client of this.openClients()) client.close();
    await waitFor(() => this.openClients().length === 0, { timeoutMs: 10_000, message: 'clients to close' }).catch(
      () => undefined,
    );
  }

  /** Every room back to its number of clients (after closes), retrying while the gateway restarts. */
  private async refill(): Promise<void> {
    for (const room of this.rooms) {
      await waitFor(() => this.fillRoom(room).then(() => true), {
        timeoutMs: RECOVERY_TIMEOUT_MS,
        intervalMs: 500,
        message: `clients of room ${room.index} to connect`,
        signal: this.signal,
      });
    }
  }

  private fillRoom(room: Room): Promise<void> {
    room.filling = room.filling.catch(() => undefined).then(() => this.connectClients(room));
    return room.filling;
  }

  private async connectClients(room: Room): Promise<void> {
    while (room.clients.filter((c) => c.open).length < this.flags.clients) {
      const id = `r${room.index}c${++this.clientCounter}`;
      const client = await ChaosClient.connect(this.openSocket, room.actorId, id, (c) => this.onClose(room, c));
      room.clients.push(client);
      client.startSending(this.flags.intervalMs);
    }
  }

  private onClose(room: Room, client: ChaosClient): void {
    const closed = client.closedWith!;
    if (closed.cause === 'unexpected') {
      this.log.error({ client: client.id, code: closed.code, actorId: room.actorId }, 'unexpected close');
      // Keep the load up: a new client takes its place.
      if (!this.ending) void this.fillRoom(room).catch((err: unknown) => this.log.warn(errorMessage(err)));
    }
  }

  private openClients(): ChaosClient[] {
    return this.rooms.flatMap((room) => room.clients.filter((c) => c.open));
  }

  /**
   * Waits until every text that open clients sent before now was broadcast, and every open client
   * heard the room's highest seq seen so far. Bounded: a timeout is counted and the run goes on.
   */
  private async settle(after: string, timeoutMs = SETTLE_TIMEOUT_MS): Promise<void> {
    const targets = this.rooms.map((room) => {
      const open = room.clients.filter((c) => c.open);
      return {
        room,
        texts: open.flatMap((c) => [...c.sent]),
        seq: Math.max(0, ...room.clients.map((c) => c.lastSeq)),
      };
    });
    const settled = (): boolean =>
      targets.every(({ room, texts, seq }) => {
        const open = room.clients.filter((c) => c.open);
        const heard = new Set(room.clients.flatMap((c) => c.heard.map((b) => b.text)));
        return texts.every((t) => heard.has(t)) && open.every((c) => c.lastSeq >= seq);
      });
    const started = Date.now();
    try {
      await waitFor(settled, { timeoutMs, intervalMs: 100, message: `settling after ${after}`, signal: this.signal });
      this.log.info({ after, ms: Date.now() - started }, 'settled');
    } catch (err) {
      if (!(err instanceof WaitTimeoutError)) throw err;
      this.settleTimeouts++;
      this.log.error({ after, rooms: this.describeRooms() }, `not settled within ${timeoutMs} ms`);
    }
  }

  private describeRooms(): unknown {
    return this.rooms.map((room) => ({
      actorId: room.actorId,
      clients: room.clients.filter((c) => c.open).map((c) => ({ id: c.id, sent: c.sent.length, lastSeq: c.lastSeq })),
    }));
  }

  private async inject(kind: FaultKind): Promise<void> {
    switch (kind) {
      case 'runner_kill':
        return this.killAndRestart(await this.pickRunner());
      case 'worker_kill':
        return this.killAndRestart(this.pick(this.stack.processes.workers));
      case 'runner_stop':
        return this.stopPastLost(await this.pickRunner());
      case 'gateway_kill':
        return this.killGateway();
      case 'temporal_restart':
        return this.stack.restartServer('temporal');
      case 'postgres_restart':
        return this.stack.restartServer('postgres');
      case 'listen_terminate':
        return this.terminateListen();
      case 'storm':
        return this.storm();
      case 'nats_restart':
        return this.stack.restartServer('nats');
    }
  }

  private async killAndRestart(proc: NodeProcess): Promise<void> {
    this.log.info({ process: proc.name }, 'SIGKILL');
    this.expectedExit.add(proc);
    proc.kill('SIGKILL');
    await proc.exited;
    await this.pause(500 + this.random() * 1500);
    await this.relaunch(proc);
  }

  private async stopPastLost(proc: NodeProcess): Promise<void> {
    const holdMs = Number(STACK_ENV.DORMOUSE_RUNNER_LOST_MS) + STOP_PAST_LOST_MS;
    this.log.info({ process: proc.name, holdMs }, 'SIGSTOP');
    proc.kill('SIGSTOP');
    try {
      await this.pause(holdMs);
    } finally {
      proc.kill('SIGCONT');
    }
  }

  /**
   * With several gateways, one of them: its clients resume elsewhere and nothing closes. With one,
   * the gateway: its clients close, are counted apart, and new ones take their place.
   */
  private async killGateway(): Promise<void> {
    const { gateway, gateways } = this.stack.processes;
    if (gateways.length > 1) return this.killAndRestart(this.pick(gateways));
    const closing = this.openClients();
    for (const client of closing) client.expectedClose = 'gateway_kill';
    this.expectedExit.add(gateway);
    gateway.kill('SIGKILL');
    await gateway.exited;
    await waitFor(() => closing.every((c) => !c.open), { timeoutMs: 10_000, message: 'clients of the killed gateway' });
    this.gatewayClosedClients += closing.length;
    await this.relaunch(gateway);
    await this.refill();
  }

  private async relaunch(proc: NodeProcess): Promise<void> {
    await proc.restart();
    this.expectedExit.delete(proc);
    this.watchExit(proc);
  }

  private async terminateListen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.stack.databaseUrl, application_name: 'dormouse-chaos' });
    await client.connect();
    try {
      const { rowCount } = await client.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'dormouse-gateway-listen'",
      );
      this.log.info({ terminated: rowCount }, 'terminated the LISTEN connection');
    } finally {
      await client.end();
    }
  }

  /** Sleep, wake and reschedule requests in quick succession on random rooms. */
  private async storm(): Promise<void> {
    const count = 5 + Math.floor(this.random() * 10);
    for (let i = 0; i < count; i++) {
      const room = this.pick(this.rooms);
      const action = this.pick(['sleep', 'wake', 'reschedule'] as const);
      const response = await this.request('POST', `/actors/${room.actorId}/${action}`);
      if (response.status !== 202) throw new Error(`${action} of ${room.actorId}: ${response.status}`);
      await this.pause(this.random() * 400);
    }
  }

  /** A runner hosting a room more often than not: a fault where it hurts. */
  private async pickRunner(): Promise<NodeProcess> {
    const runners = this.stack.processes.runners;
    if (this.random() < 0.25) return this.pick(runners);
    const room = this.pick(this.rooms);
    const response = await this.request('GET', `/actors/${room.actorId}`);
    const { actor } = (await response.json()) as { actor: { runnerId: string | null } };
    for (const runner of runners) {
      if (actor.runnerId !== null && (await runnerIdOf(runner)) === actor.runnerId) return runner;
    }
    return this.pick(runners);
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }

  private allProcesses(): NodeProcess[] {
    const { workers, gateways, runners } = this.stack.processes;
    return [...workers, ...gateways, ...runners];
  }

  /** An exit the chaos did not cause is counted, and the process started again. */
  private watchExit(proc: NodeProcess): void {
    void proc.exited.then(async (exit) => {
      if (this.expectedExit.has(proc) || this.ending) return;
      this.unexpectedExits++;
      this.log.error({ process: proc.name, exit, logFile: proc.logFile }, 'unexpected exit');
      this.expectedExit.add(proc);
      await this.relaunch(proc).catch((err: unknown) => this.log.error(errorMessage(err)));
    });
  }

  private async pause(ms: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    this.signal.throwIfAborted();
  }

  /** A request to the gateway, retried while it (or what it needs) restarts after a fault. */
  private request(method: string, path: string, body?: unknown): Promise<Response> {
    return waitFor(
      async () => {
        const response = await this.http(method, path, body);
        return response.status < 500 && response;
      },
      { timeoutMs: RECOVERY_TIMEOUT_MS, intervalMs: 500, message: `${method} ${path}`, signal: this.signal },
    );
  }

  private http(method: string, path: string, body?: unknown): Promise<Response> {
    const urls = this.stack.gatewayUrls;
    return fetch(`${urls[this.requestCounter++ % urls.length]!}${path}`, {
      method,
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
      ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
  }
}

/** Gaps, repeats and reorderings in what one client heard. */
function addOutbound(counters: Counters, heard: readonly Broadcast[]): void {
  const seen = new Set<number>();
  let max = 0;
  for (const { seq } of heard) {
    if (seen.has(seq)) counters.duplicated_outbound++;
    else if (seq < max) counters.out_of_order++;
    else if (max > 0 && seq > max + 1) counters.lost_outbound += seq - max - 1;
    seen.add(seq);
    max = Math.max(max, seq);
  }
}

/** `items` starting at index `first`, the ones before it moved to the end. */
function rotated<T>(items: readonly T[], first: number): T[] {
  return [...items.slice(first), ...items.slice(0, first)];
}

function getOrAdd<K, V>(map: Map<K, Set<V>>, key: K): Set<V> {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  return set;
}

/** The id the runner logged with its last `ready` line (it is new on every start). */
async function runnerIdOf(runner: NodeProcess): Promise<string | undefined> {
  const lines = (await readFile(runner.logFile, 'utf8')).split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!;
    if (!line.includes('"msg":"ready"')) continue;
    return (JSON.parse(line) as { runnerId?: string }).runnerId;
  }
  return undefined;
}

function parseFlags(argv: string[]): ChaosFlags | number {
  const command = new Command('chaos')
    .description('faults at random from a seed against a real stack; checks nothing is lost, doubled or reordered')
    .exitOverride()
    .requiredOption('--seed <n>', 'seed of the fault choice', wholeNumber(0))
    .option('--duration <seconds>', 'how long faults are injected', wholeNumber(1), 60)
    .option('--rooms <n>', 'chat actors', wholeNumber(1), 2)
    .option('--clients <n>', 'clients per room', wholeNumber(1), 3)
    .option('--interval-ms <ms>', 'each client sends a text this often', wholeNumber(10), 500)
    .option(
      '--gateways <n>',
      'gateways on a NATS bus; 2 or more make every client a resumable session',
      wholeNumber(1),
      1,
    )
    .addOption(
      new Option('--faults <list>', 'comma-separated fault kinds (default: all the stack can inject)').argParser(
        parseFaults,
      ),
    );
  try {
    command.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : USAGE_ERROR;
    throw err;
  }
  return command.opts<ChaosFlags>();
}

function wholeNumber(min: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min)
      throw new InvalidArgumentError(`expected a whole number of at least ${min}`);
    return n;
  };
}

function parseFaults(value: string): FaultKind[] {
  const kinds = value.split(',').map((s) => s.trim());
  for (const kind of kinds) {
    if (!(FAULT_KINDS as readonly string[]).includes(kind))
      throw new InvalidArgumentError(`unknown fault "${kind}" (known: ${FAULT_KINDS.join(', ')})`);
  }
  return kinds as FaultKind[];
}

async function main(argv: string[]): Promise<number> {
  const flags = parseFlags(argv);
  if (typeof flags === 'number') return flags;
  const config = loadConfig();
  const disabledWhy = new Map<FaultKind, string>();
  // The chaos restarts only servers it runs itself, with their state on disk.
  if (config.databaseUrl !== undefined) disabledWhy.set('postgres_restart', 'DATABASE_URL given: not ours to restart');
  if (config.temporal.addressGiven) disabledWhy.set('temporal_restart', 'TEMPORAL_ADDRESS given: not ours to restart');
  // NATS runs only under several gateways, and is ours to restart only when the stack runs it.
  if (flags.gateways === 1) disabledWhy.set('nats_restart', 'one gateway: no NATS');
  else if (config.gateway.natsServers !== undefined)
    disabledWhy.set('nats_restart', 'DORMOUSE_NATS_URL given: not ours to restart');
  // Asking for a fault this stack cannot inject is bad usage, said before anything starts.
  const impossible = flags.faults?.find((kind) => disabledWhy.has(kind));
  if (impossible !== undefined) {
    process.stderr.write(
      `error: option '--faults <list>': ${impossible} cannot be injected: ${disabledWhy.get(impossible)!}\n`,
    );
    return USAGE_ERROR;
  }
  const enabled = flags.faults ?? FAULT_KINDS.filter((kind) => !disabledWhy.has(kind));
  const log = prettyLogger(config.logLevel, 2);
  const signal = onShutdownSignal(log);
  const stack = await startLocalStack({
    config,
    log,
    ports: 'free',
    temporalUi: false,
    workers: 2,
    gateways: flags.gateways,
    runners: 3,
    env: STACK_ENV,
    restartableServers: true,
    signal,
  });
  log.info({ gateways: stack.gatewayUrls, logs: stack.logDir }, 'stack ready');
  const chaos = new Chaos(stack, flags, enabled, log, signal);
  let failed = false;
  try {
    await chaos.run();
  } catch (err) {
    if (signal.aborted) return INTERRUPTED;
    log.error(errorMessage(err));
    failed = true;
  } finally {
    await chaos.close();
    await stack.stop().catch((err: unknown) => log.error(errorMessage(err)));
    log.info({ logs: stack.logDir }, 'the logs of the stack are kept');
  }
  const result = chaos.result();
  const disabled = FAULT_KINDS.filter((kind) => !enabled.includes(kind));
  process.stdout.write(
    `${JSON.stringify({
      bench: 'chaos',
      seed: flags.seed,
      faults: chaos.faults,
      ...result,
      duration_s: flags.duration,
      gateways: flags.gateways,
      rooms: flags.rooms,
      clients_per_room: flags.clients,
      faults_disabled: disabled.map((kind) => ({ kind, why: disabledWhy.get(kind) ?? 'not selected' })),
      settings: STACK_ENV,
      failed_run: failed,
    })}\n`,
  );
  return failed || FAILING.some((key) => result[key] !== 0) ? EXIT_FAILED : 0;
}

// Exits when done: lingering handles (a stubborn connection) must not keep a finished run alive.
// Only as the entry script: the chaos test imports FAILING from here.
runIfEntryScript(import.meta.url, () => main(process.argv.slice(2)));
