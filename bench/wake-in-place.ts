/**
 * `wake-in-place` (issue 11, DESIGN §4.1): a message from a client to a *resting* `chat` room
 * (its instance dropped, its placement, generation and socket kept on the runner) until the room's
 * broadcast of it reaches the client: rebuild on the same runner, process, persist, broadcast.
 * Against a Durable Object woken from hibernation in `workerd` (bench/workerd.ts measureDoWake:
 * evicted object, hibernated socket, the same chat room), measured first in the same run.
 *
 * Two figures, both against `workerd-do-wake` (goal of issue 11: `wake-in-place` at most 2×):
 * - `wake-in-place`: the message to the resting room;
 * - `wake-in-place.active`: the same message to a room that never rests, for context: what of a
 *   wake is the rebuild and what the message's own path (gateway, runner, persist, broadcast).
 * The two rooms are timed interleaved (bench/benchmark.ts measureInterleaved), one runner.
 *
 * The resting room is created with `restAfterMs` = `--rest-after-ms` (default 1 s). Before each
 * sample the bench waits (untimed, bounded) until the actor workflow's `state` query says it
 * rests; after it, until the query says it is active again, on the same generation and runner:
 * so every sample is a wake from rest, in place. The active room's status is checked likewise
 * before and after the run. `--rest-after-ms` must leave the bench time to see the room active
 * before it rests again: much below 1 s, a slow poll could fail the run for nothing.
 */
import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import type { Command } from 'commander';
import type WebSocket from 'ws';
import type { LocalStack } from '../dev/local-stack.js';
import { waitFor } from '../dev/wait.js';
import { actorWorkflowId, stateQuery, type ActorStatus } from '../src/workflows/actor-api.js';
import {
  declareSampleFlags,
  declareStackFlags,
  figureOf,
  measureInterleaved,
  positiveInt,
  withBenchStack,
  type BenchContext,
  type Benchmark,
  type SampleFlags,
  type Samples,
  type StackFlags,
} from './benchmark.js';
import { createChat, reachChat } from './cold-start.js';
import { closeSockets, exchange, measureDoWake, openSocket, withWorkerd } from './workerd.js';

interface WakeInPlaceFlags extends SampleFlags, StackFlags {
  restAfterMs: number;
}

const WORKERD_WAKE = 'workerd-do-wake';
const HOUR_MS = 60 * 60_000;
/** Bound on one untimed wait for a status. */
const STEP_TIMEOUT_MS = 30_000;
/** Bound on a room's creation until it runs: the gateway itself gives up on a start after its wake timeout (90 s). */
const START_TIMEOUT_MS = 60_000;
/** How often the workflow's status is asked while waiting for a change (a query is a few ms). */
const STATUS_POLL_MS = 10;

export const wakeInPlace: Benchmark<WakeInPlaceFlags> = {
  name: 'wake-in-place',
  description:
    "a message to a resting actor until its broadcast returns, vs workerd's Durable Object woken from hibernation",
  declareFlags(command: Command) {
    declareSampleFlags(command, { n: 200, warmup: 5 });
    declareStackFlags(command, { workers: 1, runners: 1 });
    command.option('--rest-after-ms <ms>', "the resting room's idle time before it rests", positiveInt, 1000);
  },
  run(flags, context) {
    return withBenchStack(flags, context, async (stack) => {
      const durableObject = await withWorkerd(context, (url) =>
        measureDoWake(url, flags.n, { ...context, warmup: flags.warmup }),
      );
      const dormouse = await measureRestingAndActive(stack, flags, context);
      return [
        figureOf('wake-in-place', WORKERD_WAKE, { subject: dormouse.subject, baseline: durableObject.subject }),
        figureOf('wake-in-place.active', WORKERD_WAKE, { subject: dormouse.baseline, baseline: durableObject.subject }),
      ];
    });
  },
};

/** The resting room's wakes (subject) and the active room's messages (baseline), interleaved. */
async function measureRestingAndActive(
  stack: LocalStack,
  flags: WakeInPlaceFlags,
  context: BenchContext,
): Promise<Samples> {
  const connection = await Connection.connect({ address: stack.temporalAddress });
  const statusOf = actorStatuses(new Client({ connection, namespace: stack.namespace }));
  const runId = randomBytes(4).toString('hex');
  const rooms: ChatRoom[] = [];
  try {
    const resting = await ChatRoom.open(
      stack.gatewayUrl,
      `wake-in-place-${runId}-resting`,
      { restAfterMs: flags.restAfterMs, sleepAfterMs: HOUR_MS },
      context.signal,
    );
    rooms.push(resting);
    const active = await ChatRoom.open(
      stack.gatewayUrl,
      `wake-in-place-${runId}-active`,
      { restAfterMs: HOUR_MS, sleepAfterMs: HOUR_MS },
      context.signal,
    );
    rooms.push(active);
    const activeBefore = await statusOf(active.actorId);
    if (activeBefore.resting) throw new Error(`the room meant to stay active rests: ${JSON.stringify(activeBefore)}`);
    const samples = await measureInterleaved(
      (i, signal) => timeWakeFromRest(resting, statusOf, `rested ${i}`, signal),
      (i) => active.message(`active ${i}`),
      flags,
      context,
    );
    const activeAfter = await statusOf(active.actorId);
    expectInPlace(activeBefore, activeAfter, 'the active room');
    if (activeAfter.resting) throw new Error(`the room meant to stay active rests: ${JSON.stringify(activeAfter)}`);
    context.log.info({ samples: samples.subject.length }, 'every sample woke the room from rest, in place');
    return samples;
  } finally {
    await closeSockets(rooms.map((room) => room.socket));
    await connection.close();
  }
}

/**
 * One sample: waits (untimed) for the room to rest, times one message until its broadcast, then
 * waits (untimed) for the workflow to hear the room is active again, on the same generation and
 * runner. Returns the timed section.
 */
async function timeWakeFromRest(
  room: ChatRoom,
  statusOf: StatusOf,
  text: string,
  signal: AbortSignal,
): Promise<number> {
  const before = await waitForStatus(statusOf, room.actorId, (s) => s.resting, 'the room resting', signal);
  const start = performance.now();
  await room.message(text);
  const elapsed = performance.now() - start;
  const after = await waitForStatus(statusOf, room.actorId, (s) => !s.resting, 'the room active again', signal);
  expectInPlace(before, after, 'the resting room');
  return elapsed;
}

/** Fails unless `after` is the same running generation on the same runner as `before`. */
function expectInPlace(before: ActorStatus, after: ActorStatus, what: string): void {
  const inPlace =
    before.state === 'running' &&
    after.state === 'running' &&
    after.generation === before.generation &&
    after.runnerId === before.runnerId;
  if (!inPlace)
    throw new Error(`${what} did not stay in place: before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`);
}

type StatusOf = (actorId: string) => Promise<ActorStatus>;

/** The actor workflow's own view of an actor (its `state` query), through `temporal`. */
function actorStatuses(temporal: Client): StatusOf {
  return (actorId) => temporal.workflow.getHandle(actorWorkflowId(actorId)).query(stateQuery);
}

function waitForStatus(
  statusOf: StatusOf,
  actorId: string,
  predicate: (status: ActorStatus) => boolean,
  message: string,
  signal: AbortSignal,
): Promise<ActorStatus> {
  return waitFor(
    async () => {
      const status = await statusOf(actorId);
      return predicate(status) && status;
    },
    { timeoutMs: STEP_TIMEOUT_MS, intervalMs: STATUS_POLL_MS, message: `${message} (actor ${actorId})`, signal },
  );
}

/**
 * A `chat` room with one hibernatable client socket, the only one: every broadcast on it answers
 * the client's own message, with the next `seq` (checked: each message arrives once, in order).
 */
export class ChatRoom {
  private seq = 0;

  private constructor(
    readonly actorId: string,
    readonly socket: WebSocket,
  ) {}

  /**
   * Creates the room with `input` and waits for it to run (a start can take seconds on a busy
   * stack, longer than a message's bound), then connects as `bench` and sends a first message.
   */
  static async open(gatewayUrl: string, key: string, input: object, signal: AbortSignal): Promise<ChatRoom> {
    const bounded = AbortSignal.any([signal, AbortSignal.timeout(START_TIMEOUT_MS)]);
    const actorId = await createChat(gatewayUrl, key, bounded, undefined, input);
    await reachChat(gatewayUrl, actorId, bounded);
    const room = new ChatRoom(actorId, await openSocket(`${gatewayUrl}/actors/${actorId}/ws?name=bench`));
    await room.message('hello');
    return room;
  }

  /** Sends `text` and resolves when its broadcast comes back. */
  async message(text: string): Promise<void> {
    await exchange(this.socket, text, ++this.seq);
  }
}
