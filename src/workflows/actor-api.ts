/**
 * The actor workflow's public surface: its input, states, signals and query. Imported by the
 * workflow itself and by clients (gateway, CLI, tests), so it must stay deterministic-safe.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { EventEnvelope, StartReason } from '../protocol/runner-protocol.js';

export const ACTOR_STATES = [
  'allocating',
  'starting',
  'running',
  'stopping',
  'sleeping',
  'backoff',
  'destroyed',
] as const;
export type ActorState = (typeof ACTOR_STATES)[number];
/**
 * What the UI shows (search attribute ActorState, current details): the state, or `resting`
 * while a running actor rests in place (DESIGN §4.1). Resting is no lifecycle state: the
 * actor is running as far as routing and the registry go, and a wake needs nobody's leave.
 */
export type ShownState = ActorState | 'resting';

export const CRASH_POLICIES = ['restart', 'sleep', 'destroy'] as const;
export type CrashPolicy = (typeof CRASH_POLICIES)[number];

export function actorWorkflowId(actorId: string): string {
  return `actor/${actorId}`;
}

/** Thresholds the workflow needs; fixed at creation so replays see the same numbers. */
export interface ActorTiming {
  startThresholdMs: number;
  stopThresholdMs: number;
  backoffBaseMs: number;
  backoffMaxExponent: number;
  backoffResetMs: number;
}

export interface ActorWorkflowInput {
  actorId: string;
  name: string;
  key: string | null;
  input: unknown;
  crashPolicy: CrashPolicy;
  timing: ActorTiming;
  /** The whole workflow memory, when the workflow continued as new. */
  carried?: ActorMemory;
}

/** Where a requested stop leads once the runner confirms it. */
export type StopThen = 'sleep' | 'destroy' | 'reschedule';

/**
 * Everything the actor workflow knows, as one plain object: continue-as-new carries it whole,
 * with the signals it has taken in but not yet acted on.
 */
export interface ActorMemory {
  state: ActorState;
  generation: number;
  runnerId: string | null;
  /** Next command index and next expected event index, both per generation. */
  nextCommandIdx: number;
  nextEventIndex: number;
  /** Why the next start happens (state `allocating`). */
  startReason: StartReason;
  /** Where the current stop leads (state `stopping`). */
  stopThen: StopThen | null;
  /** Workflow-clock deadline of the running threshold or backoff, if any. */
  deadline: number | null;
  crashCount: number;
  lastCrashAt: number | null;
  lastError: string | null;
  alarmTs: number | null;
  /** The runner reported the current generation resting in place (absent in runs of older code). */
  resting?: boolean;
  /** Requests from clients (signals) not yet acted on. */
  requested: { wake: boolean; sleep: boolean; reschedule: boolean; destroy: boolean };
  /** What the runner reported for the current generation. */
  observed: {
    running: boolean;
    stopped: { code: 'ok' | 'error'; message?: string } | null;
    intent: 'sleep' | 'stop' | null;
    runnerLost: boolean;
  };
  /** Events that arrived ahead of a gap, held until the gap fills. */
  earlyEvents: EventEnvelope[];
}

/** What the `state` query answers. */
export interface ActorStatus {
  actorId: string;
  state: ActorState;
  /** Running, and resting in place. */
  resting: boolean;
  generation: number;
  runnerId: string | null;
  crashCount: number;
  alarmTs: number | null;
}

export const wakeSignal = defineSignal('wake');
export const sleepSignal = defineSignal('sleep');
export const rescheduleSignal = defineSignal('reschedule');
export const destroySignal = defineSignal('destroy');
export const eventsSignal = defineSignal<[EventEnvelope[]]>('events');
export const runnerLostSignal = defineSignal<[{ runnerId: string }]>('runnerLost');
export const stateQuery = defineQuery<ActorStatus>('state');
