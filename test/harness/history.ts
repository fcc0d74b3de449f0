/**
 * Reading actor workflow histories the way an operator reads them in the Temporal UI: which
 * activities ran with which inputs and results. Also records histories for the replay test.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import type { temporal } from '@temporalio/proto';
import type { HibernatingRequestRef, StartActorCommand } from '../../src/protocol/runner-protocol.js';
import type { InsertAndSendInput, StartReads } from '../../src/activities/start.js';
import { actorWorkflowId } from '../../src/workflows/actor-api.js';

type History = temporal.api.history.v1.IHistory;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

export const HISTORIES_DIR = fileURLToPath(new URL('../histories/', import.meta.url));
/**
 * The newest patch of the actor workflow (src/workflows/actor.ts): new recordings are named after
 * it, so each patch adds a set of histories beside those of older code. Change it with every patch.
 */
const RECORDED_WITH = 'local-state-records';

export interface ActivityCall {
  name: string;
  /** A local activity: recorded as a marker, which holds its result but not its input. */
  local: boolean;
  scheduledEventId: number;
  /** When the workflow scheduled it (ms since epoch, server clock). */
  scheduledAt: number;
  input: unknown;
  /** Undefined while not completed. */
  result?: unknown;
  attempts: number;
  summary: string | null;
}

/** The whole history of an actor's workflow, across continue-as-new runs. */
export async function actorHistories(client: Client, actorId: string): Promise<History[]> {
  const histories: History[] = [];
  const handle = client.workflow.getHandle(actorWorkflowId(actorId));
  const latest = await handle.describe();
  // Walk from the first run: each run's last event names the next one when it continued as new.
  let runId: string | undefined = latest.raw.workflowExecutionInfo?.firstRunId || latest.runId;
  while (runId) {
    const history = await client.workflow.getHandle(handle.workflowId, runId).fetchHistory();
    histories.push(history);
    const last = history.events?.at(-1);
    runId = last?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  return histories;
}

/** Every activity the workflow scheduled, in order, with decoded input and result. */
export function activityCalls(histories: History[]): ActivityCall[] {
  const calls: ActivityCall[] = [];
  for (const history of histories) {
    const byScheduledId = new Map<number, ActivityCall>();
    for (const event of history.events ?? []) {
      const scheduled = event.activityTaskScheduledEventAttributes;
      if (scheduled) {
        const call: ActivityCall = {
          name: scheduled.activityType?.name ?? '?',
          local: false,
          scheduledEventId: Number(event.eventId),
          scheduledAt: eventTimeMs(event),
          input: decodeFirst(scheduled.input?.payloads),
          attempts: 0,
          summary: userMetadataSummary(event),
        };
        byScheduledId.set(call.scheduledEventId, call);
        calls.push(call);
      }
      const started = event.activityTaskStartedEventAttributes;
      if (started) {
        const call = byScheduledId.get(Number(started.scheduledEventId));
        if (call) call.attempts = started.attempt ?? 1;
      }
      const completed = event.activityTaskCompletedEventAttributes;
      if (completed) {
        const call = byScheduledId.get(Number(completed.scheduledEventId));
        if (call) call.result = decodeFirst(completed.result?.payloads) ?? null;
      }
      const localCall = localActivityCall(event);
      if (localCall) calls.push(localCall);
    }
  }
  return calls;
}

export interface RecordedStart {
  generation: number;
  reason: string;
  /** The snapshot read for this start (`allocateAndSnapshot`, or `listHibernatingRequests` in older runs and after a failed local read). */
  snapshot: HibernatingRequestRef[];
  /** The StartActor in the input of `insertAndSendCommands`. */
  command: StartActorCommand;
  /** How many snapshot reads this start made (DESIGN §1: exactly one). */
  snapshotReads: number;
  sendAttempts: number;
  sendSummary: string | null;
}

/**
 * Each start as the history records it: the snapshot read and the command sent. Throws if the
 * history breaks the one rule (a start without exactly one snapshot read before its send).
 */
export function recordedStarts(calls: ActivityCall[]): RecordedStart[] {
  const starts: RecordedStart[] = [];
  let snapshots: HibernatingRequestRef[][] = [];
  for (const call of calls) {
    if (call.name === 'listHibernatingRequests' || call.name === 'allocateAndSnapshot') {
      if (call.result === undefined && call.local) continue; // a failed local attempt; the regular activity reads
      if (call.result === undefined) throw new Error('a snapshot read has not completed');
      snapshots.push(
        call.name === 'allocateAndSnapshot'
          ? (call.result as StartReads).hibernatingRequests
          : (call.result as HibernatingRequestRef[]),
      );
      continue;
    }
    if (call.name !== 'insertAndSendCommands') continue;
    const input = call.input as InsertAndSendInput;
    const start = input.commands.find((c) => c.command.kind === 'startActor');
    if (!start || start.command.kind !== 'startActor') continue;
    if (snapshots.length !== 1)
      throw new Error(`start of generation ${start.generation} follows ${snapshots.length} snapshot reads`);
    starts.push({
      generation: start.generation,
      reason: start.command.reason,
      snapshot: snapshots[0]!,
      command: start.command,
      snapshotReads: snapshots.length,
      sendAttempts: call.attempts,
      sendSummary: call.summary,
    });
    snapshots = [];
  }
  return starts;
}

/**
 * Saves an actor's histories under test/histories when DORMOUSE_RECORD_HISTORIES is set. A file
 * that exists is kept: recorded histories are only ever added, never re-recorded, so the replay
 * suite keeps proving that runs of older workflow code still replay. Record a new behaviour under
 * a new name.
 */
export async function recordHistories(client: Client, actorId: string, name: string): Promise<void> {
  if (!process.env.DORMOUSE_RECORD_HISTORIES) return;
  const histories = await actorHistories(client, actorId);
  await mkdir(HISTORIES_DIR, { recursive: true });
  await Promise.all(
    histories.map(async (history, i) => {
      const part = histories.length > 1 ? `.${i + 1}` : '';
      const file = join(HISTORIES_DIR, `${name}@${RECORDED_WITH}${part}.json`);
      try {
        await writeFile(file, historyToJSON(history), { flag: 'wx' });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }),
  );
}

/** The SDK's marker for a local activity: its type and attempt in `data`, its result (if it succeeded) in `result`. */
const LOCAL_ACTIVITY_MARKER = 'core_local_activity';

function localActivityCall(event: HistoryEvent): ActivityCall | null {
  const marker = event.markerRecordedEventAttributes;
  if (marker?.markerName !== LOCAL_ACTIVITY_MARKER) return null;
  const data = decodeFirst(marker.details?.data?.payloads) as { activity_type?: string; attempt?: number } | undefined;
  return {
    name: data?.activity_type ?? '?',
    local: true,
    scheduledEventId: Number(event.eventId),
    scheduledAt: eventTimeMs(event),
    input: undefined,
    ...(marker.failure ? {} : { result: decodeFirst(marker.details?.result?.payloads) ?? null }),
    attempts: data?.attempt ?? 1,
    summary: userMetadataSummary(event),
  };
}

function eventTimeMs(event: HistoryEvent): number {
  const t = event.eventTime;
  return t ? Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) : 0;
}

function decodeFirst(payloads: temporal.api.common.v1.IPayload[] | null | undefined): unknown {
  const payload = payloads?.[0];
  return payload ? defaultPayloadConverter.fromPayload(payload) : undefined;
}

function userMetadataSummary(event: HistoryEvent): string | null {
  const summary = event.userMetadata?.summary;
  return summary ? defaultPayloadConverter.fromPayload<string>(summary) : null;
}
