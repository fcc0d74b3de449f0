/**
 * The runner: a user process that hosts actors. It connects to a gateway, applies the commands
 * its queue delivers (each once, in order per actor), reports actor events, and serves tunnelled
 * requests. A runner id names one process's life: a restarted process is a new runner, and its
 * predecessor's actors move when the reaper declares it lost. A reconnect, to the same gateway or
 * another one, is the same runner: it keeps its actors (the welcome names any the registry moved
 * meanwhile) and resends whatever the lost socket left unacknowledged.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { pino } from 'pino';
import type { Logger } from '../log.js';
import {
  RUNNER_DEFAULTS,
  SUPPORTED_PROTOCOL_VERSIONS,
  type CommandEnvelope,
  type GatewayToRunner,
  type GatewayTunnelFrame,
  type GatewayTunnelMessage,
  type TunnelAddress,
  type TunnelMessage,
} from '../protocol/runner-protocol.js';
import { KeyedQueue } from '../util/keyed-queue.js';
import { ActorInstance, type InstanceHost, type RunnerFaults } from './actor-instance.js';
import type { AnyActorDefinition } from './define-actor.js';
import { EventOutbox } from './event-outbox.js';
import { GatewayLink, runnerConnectUrls, type Welcome } from './gateway-link.js';
import { KvClient } from './kv-client.js';
import { RestCache } from './rest-cache.js';

export interface RunnerOptions {
  /**
   * The gateway's base URL, e.g. `http://127.0.0.1:6420`; or several gateways' (DESIGN §2.1), its
   * own first. The runner connects to the first that answers, in this order; when its gateway
   * goes away it moves to the next one at once (cycling through all, with backoff once every one
   * has failed) and keeps its actors. Each must be an http(s) URL: `createRunner` throws otherwise.
   */
  gatewayUrl: string | readonly string[];
  actors: AnyActorDefinition[];
  name?: string;
  pool?: string;
  /** How many actors this runner hosts at most. */
  capacity?: number;
  /** Idle time before an actor rests in place (DESIGN §4.1), unless its type or input says otherwise. */
  defaultRestAfterMs?: number;
  /** Idle time before an actor sleeps, unless its type or input says otherwise. */
  defaultSleepAfterMs?: number;
  /**
   * Bytes of resting actors' states kept in memory, all actors together (RestCache): a wake
   * from rest within it reads nothing from Postgres. 0 keeps none.
   */
  restCacheBytes?: number;
  log?: Logger;
  /** The pool's runner token, when the gateway requires one. */
  token?: string;
  /** Test hooks; leave unset. */
  faults?: RunnerFaults;
}

export interface Runner {
  readonly runnerId: string;
  /** Resolves once connected to a gateway (the first of `gatewayUrl` that answers). */
  start(): Promise<void>;
  /** Graceful: drain, stop every actor (they move to other runners), then disconnect. */
  stop(): Promise<void>;
}

const SHUTDOWN_ACK_TIMEOUT_MS = 5_000;

export function createRunner(options: RunnerOptions): Runner {
  return new ActorRunner(options);
}

class ActorRunner implements Runner {
  readonly runnerId = randomUUID();
  private readonly definitions: Map<string, AnyActorDefinition>;
  private readonly instances = new Map<string, ActorInstance>();
  /** Last command applied per actor, to drop replays: (generation, idx). */
  private readonly applied = new Map<string, { generation: number; idx: number }>();
  /** Commands (and the final stops) apply one at a time per actor, in order. */
  private readonly commandQueue = new KeyedQueue();
  private readonly link: GatewayLink;
  private readonly outbox: EventOutbox;
  private readonly kv: KvClient;
  private readonly log: Logger;
  /** One for every instance: a resting actor should cost little more than its connection records. */
  private readonly instanceHost: InstanceHost;

  constructor(options: RunnerOptions) {
    if (options.actors.length === 0) throw new Error('a runner must host at least one actor type');
    this.definitions = new Map(options.actors.map((d) => [d.name, d]));
    this.log = (options.log ?? pino({ level: 'info' })).child({ runnerId: this.runnerId });
    const urls = runnerConnectUrls(options.gatewayUrl);
    const send = (frame: Parameters<GatewayLink['send']>[0]) => this.link.send(frame);
    this.outbox = new EventOutbox(send);
    this.kv = new KvClient(send);
    this.link = new GatewayLink(
      urls,
      {
        hello: () => ({
          type: 'hello',
          protocolVersions: SUPPORTED_PROTOCOL_VERSIONS,
          runnerId: this.runnerId,
          name: options.name ?? `${hostname()}-${process.pid}`,
          pool: options.pool ?? RUNNER_DEFAULTS.pool,
          capacity: options.capacity ?? RUNNER_DEFAULTS.capacity,
          actorNames: [...this.definitions.keys()],
          actors: [...this.instances.values()].map((i) => ({ actorId: i.actorId, generation: i.generation })),
        }),
        onWelcome: (welcome) => this.onWelcome(welcome),
        onMessage: (message) => this.onMessage(message),
      },
      this.log,
      options.token,
    );
    options.faults?.onLink?.(() => this.link.drop());
    this.instanceHost = {
      emit: (actorId, generation, event) => this.outbox.emit(actorId, generation, event),
      kv: (actorId, generation, op) => this.kv.request(actorId, generation, op),
      send: (frame) => this.link.send(frame),
      faults: options.faults,
      ended: (ended) => this.forget(ended),
      idle: {
        restAfterMs: options.defaultRestAfterMs ?? RUNNER_DEFAULTS.restAfterMs,
        sleepAfterMs: options.defaultSleepAfterMs ?? RUNNER_DEFAULTS.sleepAfterMs,
      },
      restCache: new RestCache(options.restCacheBytes ?? RUNNER_DEFAULTS.restCacheBytes),
      log: this.log,
    };
  }

  start(): Promise<void> {
    return this.link.start();
  }

  async stop(): Promise<void> {
    this.log.info({ actors: this.instances.size }, 'runner draining');
    this.link.send({ type: 'drain' });
    await Promise.all([...this.instances.values()].map((i) => this.serialize(i.actorId, () => i.stop('stop'))));
    if (!(await this.outbox.drained(SHUTDOWN_ACK_TIMEOUT_MS)))
      this.log.warn('some events were not acknowledged before shutdown');
    await this.link.close();
    this.log.info('runner stopped');
  }

  private onWelcome(welcome: Welcome): void {
    for (const stale of welcome.staleActors) {
      const instance = this.instances.get(stale.actorId);
      if (instance?.generation === stale.generation) instance.dispose('the registry moved this actor elsewhere');
    }
    this.outbox.resendAll();
    this.kv.resendAll();
    // H9: frames to clients the old socket may have lost go again, before anything newer.
    for (const instance of this.instances.values()) instance.resendOutbound();
  }

  private onMessage(message: Exclude<GatewayToRunner, { type: 'welcome' }>): void {
    switch (message.type) {
      case 'commands':
        return this.takeCommands(message.commands);
      case 'ackEvents':
        return this.outbox.onAck(message.acks);
      case 'kvResponse':
        return this.kv.onResponse(message);
      case 'tunnel':
        return this.onTunnel(message);
      case 'pong':
        return;
    }
  }

  /** A tunnelled request or WebSocket frame, for the actor generation it names. */
  private onTunnel(frame: GatewayTunnelFrame): void {
    const { requestId, message } = frame;
    switch (message.kind) {
      case 'httpRequest':
        return void this.serveHttp(frame, message);
      case 'wsOpen':
        return void this.hosting(frame)?.openConnection(requestId, message);
      case 'wsMessage':
        return void this.hosting(frame)?.takeMessage(requestId, message);
      case 'wsClose':
        // A close for an actor not running here reaches it at its next start (M\L).
        return void this.hosting(frame, false)?.clientClosed(requestId, message);
      case 'wsOutAck': {
        // Also while stopping: what onStop sent is acknowledged like anything else.
        const instance = this.instances.get(frame.actorId);
        if (instance?.generation === frame.generation) instance.outAcked(requestId, message.seq);
        return;
      }
    }
  }

  /**
   * The running instance a tunnelled frame is for. If there is none, the gateway hears
   * `not_hosted` and keeps the connection (it hibernates or waits for the next start).
   */
  private hosting(address: TunnelAddress, answer = true): ActorInstance | undefined {
    const { requestId, actorId, generation } = address;
    const instance = this.instances.get(actorId);
    if (instance?.generation === generation && instance.isRunning) return instance;
    if (answer) {
      const message = `actor ${actorId} generation ${generation} is not running here`;
      this.link.send({ type: 'tunnel', requestId, actorId, generation, message: { kind: 'notHosted', message } });
    }
    return undefined;
  }

  /** Commands apply in order per actor; a replay of one already applied is acknowledged and dropped. */
  private takeCommands(commands: CommandEnvelope[]): void {
    const fresh = commands.filter((c) => !this.isReplay(c));
    for (const c of fresh) this.applied.set(c.actorId, { generation: c.generation, idx: c.idx });
    this.link.send({
      type: 'ackCommands',
      acks: commands.map(({ actorId, generation, idx }) => ({ actorId, generation, idx })),
    });
    for (const c of fresh) void this.serialize(c.actorId, () => this.apply(c));
  }

  private isReplay(c: CommandEnvelope): boolean {
    const last = this.applied.get(c.actorId);
    return (
      last !== undefined && (c.generation < last.generation || (c.generation === last.generation && c.idx <= last.idx))
    );
  }

  private serialize(actorId: string, fn: () => Promise<void>): Promise<void> {
    return this.commandQueue.run(actorId, fn).catch((err: unknown) => {
      this.log.error({ err, actorId }, 'applying a command failed');
    });
  }

  private async apply({ idx, command }: CommandEnvelope): Promise<void> {
    this.log.debug({ idx, command }, 'command applied');
    const current = this.instances.get(command.actorId);
    if (command.kind === 'stopActor') {
      if (current?.generation === command.generation) await current.stop(command.reason);
      return;
    }
    if (current && current.generation >= command.generation) return;
    current?.dispose(`superseded by generation ${command.generation}`);

    const definition = this.definitions.get(command.name);
    if (!definition) {
      this.outbox.emit(command.actorId, command.generation, {
        kind: 'stopped',
        code: 'error',
        message: `runner does not host actor type ${command.name}`,
      });
      return;
    }
    const instance = new ActorInstance(command, definition, this.instanceHost);
    this.instances.set(command.actorId, instance);
    // Not awaited: a start that hangs in onStart must not hold back the stop (or the next
    // generation) that the workflow sends when its start threshold passes.
    void instance.start();
  }

  private forget(instance: ActorInstance): void {
    if (this.instances.get(instance.actorId) === instance) this.instances.delete(instance.actorId);
    this.outbox.retire(instance.actorId, instance.generation);
  }

  private async serveHttp(
    address: TunnelAddress,
    request: TunnelMessage<GatewayTunnelMessage, 'httpRequest'>,
  ): Promise<void> {
    const instance = this.hosting(address);
    if (!instance) return;
    const result = await instance.handleHttp(request);
    const { requestId, actorId, generation } = address;
    this.link.send({ type: 'tunnel', requestId, actorId, generation, message: { kind: 'httpResponse', ...result } });
  }
}
