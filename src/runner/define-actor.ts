/**
 * What an actor type is, for the people who write one: a name, optional persisted state, and
 * handlers. The runner calls them; the actor never talks to Postgres or Temporal itself.
 */
import type { Logger } from '../log.js';
import { actorName } from '../protocol/runner-protocol.js';

export interface ActorKv {
  get(key: string): Promise<Buffer | null>;
  put(key: string, value: Buffer | string): Promise<void>;
  delete(key: string): Promise<void>;
  /** Entries whose key starts with `prefix`, in key order. */
  list(prefix: string): Promise<{ key: string; value: Buffer }[]>;
}

/** A client WebSocket tunnelled to the actor. */
export interface Connection<Attachment = unknown> {
  /** The request id: stable across every sleep, crash and move of a hibernatable connection. */
  readonly id: string;
  /** The path after `/actors/:id/ws`, query string included. */
  readonly path: string;
  /**
   * The request headers. A restored hibernatable connection has only those its record
   * persisted: never credentials (Authorization, Cookie, API keys…) unless the actor type lists
   * them in `persistHeaders`.
   */
  readonly headers: Readonly<Record<string, string>>;
  /** A hibernatable connection survives the actor's sleep, crash and move. */
  readonly hibernatable: boolean;
  /** Small user data kept with the connection (JSON, at most 4 KiB), restored with it. */
  readonly attachment: Attachment | null;
  /** Persisted with the write that ends the current handler (or at once outside one). */
  setAttachment(value: Attachment | null): Promise<void>;
  /**
   * Sends a frame to the client. It leaves with the write that ends the current handler (in the
   * same transaction as its state, KV writes and processed index) and reaches the client exactly
   * once while the client's socket stays open, across crash and move (H9).
   */
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export interface ConnectionRequest {
  path: string;
  headers: Readonly<Record<string, string>>;
}

export interface ActorContext<State = unknown, Input = unknown> {
  readonly actorId: string;
  readonly name: string;
  readonly key: string | null;
  readonly input: Input;
  readonly generation: number;
  /**
   * The actor's state, loaded before `onStart` and saved after every handler that changed it
   * (compared as JSON). `saveState()` saves it at once; inside a handler it commits everything the
   * handler did so far (state, KV writes, frames sent, and a message handler's message as processed).
   */
  state: State;
  saveState(): Promise<void>;
  /**
   * Raw storage beside the state. Keys starting with `__dormouse/` are reserved. Inside a handler
   * puts and deletes commit with the handler's write (a replayed message never repeats them);
   * reads see them at once.
   */
  readonly kv: ActorKv;
  /** Ask to be put to sleep now (instead of waiting for the idle timeout). */
  sleep(): void;
  /** Ask to be destroyed: the actor stops, its storage and key are freed. */
  destroy(): void;
  /** Crash the actor: it stops with this error and its crash policy applies. */
  crash(error: Error): void;
  /** Schedule `onAlarm` at `ts` (ms since epoch), waking the actor if it sleeps; null clears it. */
  setAlarm(ts: number | null): Promise<void>;
  /** The open WebSocket connections, restored ones included. */
  connections(): Connection[];
  /** Sends to every open connection. */
  broadcast(data: string | Uint8Array): void;
  readonly log: Logger;
}

export interface ActorDefinition<State = unknown, Input = unknown> {
  name: string;
  /**
   * Idle time before the actor rests in place (DESIGN §4.1): its instance is dropped (state,
   * connection objects, anything held in memory) while its generation, runner and connections
   * stay; the next message, request, close or alarm rebuilds it from its persisted state and
   * connection records, on the same runner, in milliseconds. An actor's `input.restAfterMs`
   * overrides it. Keep what must outlive a rest in `state`, `kv` or connection attachments.
   */
  restAfterMs?: number;
  /**
   * Idle time before the actor goes to sleep (its generation stops and frees its runner slot;
   * the next wake starts a new one); an actor's `input.sleepAfterMs` overrides it.
   */
  sleepAfterMs?: number;
  /**
   * Credential headers (Authorization, Cookie, API keys, tokens…) that a hibernatable
   * connection's persisted record may keep, by name. By default it keeps none of them.
   */
  persistHeaders?: string[];
  /** Bounds of the per-connection outbox (DEFAULT_OUTBOX_LIMITS); past them the connection closes with 4414. */
  outboxLimits?: { frames?: number; bytes?: number };
  /** The state of a new actor (nothing persisted yet). */
  createState?: (input: Input) => State;
  /**
   * Runs on every start of a generation, before the actor is reported running. Throwing crashes
   * the start. A rebuild after a rest is not a start: it does not run again.
   */
  onStart?: (ctx: ActorContext<State, Input>) => Promise<void> | void;
  /** Tunnelled HTTP. A throw answers 500; the actor keeps running. */
  onRequest?: (ctx: ActorContext<State, Input>, request: Request) => Promise<Response> | Response;
  onAlarm?: (ctx: ActorContext<State, Input>) => Promise<void> | void;
  /**
   * Runs before a requested stop (sleep, destroy, move) of a live instance; state is saved after
   * it. A resting actor stops without being rebuilt: it has nothing in memory to save.
   */
  onStop?: (ctx: ActorContext<State, Input>) => Promise<void> | void;
  /**
   * Accept WebSockets as hibernatable: all of them, or decided per connection. A hibernatable
   * connection stays open at the gateway while the actor sleeps, crashes or moves, and does not
   * keep the actor awake.
   */
  hibernatable?: boolean | ((ctx: ActorContext<State, Input>, request: ConnectionRequest) => boolean);
  /** A new connection (not a restored one). Throwing, or closing it, refuses it. */
  onConnect?: (ctx: ActorContext<State, Input>, conn: Connection) => Promise<void> | void;
  /**
   * A client message, delivered once and in order. State changes made here are persisted
   * together with the message's index before it is acknowledged. Actors without it refuse WebSockets.
   * If it throws, the message still counts as processed (what it did so far is kept, and it is
   * not delivered again), then the actor crashes and its crash policy applies; so do throws in
   * onAlarm and onDisconnect.
   */
  onMessage?: (ctx: ActorContext<State, Input>, conn: Connection, message: string | Buffer) => Promise<void> | void;
  /** The client went away: closed, or lost while the actor was stopped. Called once per connection. */
  onDisconnect?: (
    ctx: ActorContext<State, Input>,
    conn: Connection,
    event: { code: number; reason: string },
  ) => Promise<void> | void;
}

/** Identity function that gives actor definitions their types. */
export function defineActor<State = unknown, Input = unknown>(
  definition: ActorDefinition<State, Input>,
): ActorDefinition<State, Input> {
  const name = actorName.safeParse(definition.name);
  if (!name.success)
    throw new Error(`invalid actor name ${JSON.stringify(definition.name)}: ${name.error.issues[0]?.message}`);
  for (const what of ['restAfterMs', 'sleepAfterMs'] as const) {
    const value = definition[what];
    if (value !== undefined && !(typeof value === 'number' && value > 0))
      throw new Error(`${what} must be a positive number of milliseconds, got ${String(value)}`);
  }
  for (const [what, value] of Object.entries(definition.outboxLimits ?? {}))
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1))
      throw new Error(`outboxLimits.${what} must be a positive integer, got ${String(value)}`);
  if (definition.persistHeaders?.some((h) => typeof h !== 'string' || h.length === 0))
    throw new Error('persistHeaders must name headers');
  return definition;
}

/** Any actor definition, whatever its state and input types. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyActorDefinition = ActorDefinition<any, any>;
