/**
 * `phases`: where the time of a cold start and of a wake goes. For each of `--n` new `chat`
 * actors (after `--warmup` uncounted), one trial: a cold start timed exactly as `cold-start`
 * times it (createAndReach: `POST /actors`, then `GET /actors/:id/http/state` until the actor's
 * reply); untimed, a hibernatable client connects, its first message round-trips and the actor
 * is put to sleep; then a wake as `wake` times it (that client's message until the actor's
 * broadcast of it comes back). Trials alternate with the bare three-activity workflow
 * (bench/baseline.ts), the totals' baseline.
 *
 * Once every trial is done, each interval is cut at timestamps that the parts on its path
 * recorded, all on this machine's wall clock: the client's (performance.now(), anchored to a tick
 * of Date.now() before each trial), the Temporal server's event times in the actor's workflow
 * history, and Postgres `now()` in the rows the path writes (`actors.created_at`; for the start
 * command, `runner_commands.created_at`, the send activity's transaction start, and `acked_at`,
 * when the gateway took the runner's acknowledgement, which the runner sends as it receives a
 * command). The cuts are in path order, so a trial's phases add up to its total exactly; the
 * medians of the phases need not add up to the median of the totals, and the `unaccounted` line
 * says by how much they do not.
 *
 * Output, one JSON line each (bench/run.ts prints them), for `cold-start` then `wake` (`<s>`):
 * - `phases/<s>`: the totals (LatencyFigure) against the bare three-activity workflow;
 * - `phases/<s>/<phase>`: each phase in path order (LatencyFigure) against the total of the
 *   same trials, so `ratio` is the phase's share of the total median;
 * - `phases/<s>/unaccounted` (QuantityFigure, ms): the total median less the phase medians;
 * - `phases/<s>/workflow-task/<part>` (LatencyFigure, against the total): `workflow-task` cut
 *   where the worker logged `actor allocated` (its log file; pino times, whole milliseconds):
 *   before, the task's way to the worker, the first activation and the allocation inside the
 *   local allocateAndSnapshot (the snapshot read beside it); after, the rest of that activity,
 *   the activation that takes its result and schedules the send, and the task's completion. A
 *   split of one phase, not in the sum;
 * - `phases/<s>/off-path/<what>` (LatencyFigure, against the total): work that runs beside the
 *   path and is not in the sum, shown because the path no longer waits for it;
 * then, with one worker, `phases/local-activity/<type>` (QuantityFigure, ms): the mean time of
 * the start's local activities inside the workflow task, from the worker's SDK metrics
 * (`local_activity_succeed_endtoend_latency`: scheduled in the worker to completed), over every
 * start of the run including the warm-up, against the median cold-start `workflow-task`. History
 * markers carry no time of their own: they are written with the task's completion.
 * Per-trial diagnostics (workflow tasks per start, local activities, fallbacks) go to stderr.
 *
 * The stack's environment: DORMOUSE_COMMAND_RETENTION_MS is a day, so that no start command's
 * row is trimmed before it is read at the end; with one worker, DORMOUSE_WORKER_METRICS_ADDRESS
 * on a free port (two workers could not share it).
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import type { Command } from 'commander';
import pg from 'pg';
import WebSocket from 'ws';
import { freePort } from '../dev/free-port.js';
import type { LocalStack } from '../dev/local-stack.js';
import { waitFor } from '../dev/wait.js';
import type { InsertAndSendInput } from '../src/activities/start.js';
import type { StateChange } from '../src/db/actors.js';
import type { EventEnvelope } from '../src/protocol/runner-protocol.js';
import { wsText } from '../src/util/ws-data.js';
import { actorWorkflowId, eventsSignal, wakeSignal } from '../src/workflows/actor-api.js';
import {
  declareSampleFlags,
  declareStackFlags,
  figureOf,
  measureInterleaved,
  quantityOf,
  withBenchStack,
  type BenchContext,
  type Benchmark,
  type Figure,
  type LatencyFigure,
  type SampleFlags,
  type StackFlags,
} from './benchmark.js';
import { BASELINE_NAME, startBaseline } from './baseline.js';
import { createAndReach } from './cold-start.js';

type PhasesFlags = SampleFlags & StackFlags;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

const STEP_TIMEOUT_MS = 60_000;
const DAY_MS = 24 * 60 * 60_000;
/** The SDK's marker for a local activity (as test/harness/history.ts reads it). */
const LOCAL_ACTIVITY_MARKER = 'core_local_activity';

/** A point on a start's path; every one is a wall-clock time in ms since the epoch. */
type Mark =
  | 'request'
  | 'actorInserted'
  | 'workflowStarted'
  | 'wakeSignalled'
  | 'taskStarted'
  | 'sendScheduled'
  | 'sendStarted'
  | 'commandInserted'
  | 'commandAcked'
  | 'runningSignalled'
  | 'reply'
  | 'sendCompleted'
  | 'runningRecorded'
  | 'allocated';
type Marks = Partial<Record<Mark, number>>;

interface Phase {
  name: string;
  from: Mark;
  to: Mark;
}

/** From the workflow's trigger (start or wake signal) to the running signal: the same for both. */
const START_PATH: Phase[] = [
  // Matching hands the workflow task to the worker's poll.
  { name: 'workflow-task-dispatch', from: 'workflowStarted', to: 'taskStarted' },
  // The worker runs the workflow, the local allocateAndSnapshot inside the task (a marker), and
  // completes it, scheduling insertAndSendCommands.
  { name: 'workflow-task', from: 'taskStarted', to: 'sendScheduled' },
  // Eager: the worker asked for the activity in the task's completion, which starts it at once.
  { name: 'activity-dispatch', from: 'sendScheduled', to: 'sendStarted' },
  // The completion's answer takes the activity to the worker, which runs it up to its
  // transaction's start.
  { name: 'activity-to-insert', from: 'sendStarted', to: 'commandInserted' },
  // Insert, commit with pg_notify, the gateway's LISTEN, its pendingCommands read, the
  // runner WebSocket there and the runner's acknowledgement back.
  { name: 'command-delivery', from: 'commandInserted', to: 'commandAcked' },
  // The instance starts (state read from the KV through the gateway, onStart), reports
  // running; the gateway signals the workflow.
  { name: 'runner-start', from: 'commandAcked', to: 'runningSignalled' },
];

const COLD_START_PHASES: Phase[] = [
  // HTTP, validation, up to the INSERT's transaction start.
  { name: 'gateway-insert', from: 'request', to: 'actorInserted' },
  // The insert, its commit, StartWorkflowExecution until the server records it.
  { name: 'gateway-start-workflow', from: 'actorInserted', to: 'workflowStarted' },
  ...START_PATH,
  // Beside the signal: the gateway frees the held GET (sent as soon as the 201 came, it has
  // waited there), reads the row, tunnels it; the actor answers (actor-watch.ts).
  { name: 'reply', from: 'runningSignalled', to: 'reply' },
];

const WAKE_PHASES: Phase[] = [
  // The hibernated socket's frame reaches the gateway, which signals `wake`.
  { name: 'gateway-wake-signal', from: 'request', to: 'wakeSignalled' },
  { ...START_PATH[0]!, from: 'wakeSignalled' },
  ...START_PATH.slice(1),
  // The gateway hands the held message to the restored connection, the actor persists it and
  // broadcasts, the gateway forwards the broadcast.
  { name: 'message-to-broadcast', from: 'runningSignalled', to: 'reply' },
];

/** The workflow task cut where the worker logged the allocation; not in the sum either. */
const WORKFLOW_TASK_PARTS: Phase[] = [
  { name: 'workflow-task/until-allocated', from: 'taskStarted', to: 'allocated' },
  { name: 'workflow-task/after-allocated', from: 'allocated', to: 'sendScheduled' },
];

/** Beside the path, not in its sum: what the path no longer waits for. */
const OFF_PATH: Phase[] = [
  // The send activity's commit and completion: the workflow learns of it here.
  { name: 'off-path/send-completed', from: 'commandInserted', to: 'sendCompleted' },
  // The workflow's recordActorState(running) round, which the first reply used to wait for.
  { name: 'off-path/record-running', from: 'runningSignalled', to: 'runningRecorded' },
];

interface Trial {
  actorId: string;
  /** Client times of the cold start and of the wake. */
  coldStart: { request: number; reply: number };
  wake: { request: number; reply: number };
}

/** How the workflow ran one start, for stderr. */
interface StartShape {
  workflowTasks: number;
  localActivities: number;
  regularFallbacks: number;
}

export const phases: Benchmark<PhasesFlags> = {
  name: 'phases',
  description: 'cold start and wake split into phases by workflow history and Postgres timestamps',
  declareFlags(command: Command) {
    declareSampleFlags(command, { n: 50, warmup: 5 });
    declareStackFlags(command, { workers: 1, runners: 1 });
  },
  async run(flags, context) {
    const metricsAddress = flags.workers === 1 ? `127.0.0.1:${await freePort()}` : undefined;
    const env = {
      DORMOUSE_COMMAND_RETENTION_MS: String(DAY_MS),
      ...(metricsAddress && { DORMOUSE_WORKER_METRICS_ADDRESS: metricsAddress }),
    };
    return withBenchStack(flags, context, (stack) => measure(stack, flags, context, metricsAddress), env);
  },
};

/**
 * Wall-clock ms with sub-millisecond digits, comparable with the servers' timestamps:
 * performance.now() plus an offset taken when Date.now() ticks. performance.timeOrigin + now()
 * would drift from the wall clock (about 0.5 ms a minute on the development VM), so each trial
 * anchors anew.
 */
class ClientClock {
  private offset = ClientClock.offsetAtTick();

  now(): number {
    return this.offset + performance.now();
  }

  anchor(): void {
    this.offset = ClientClock.offsetAtTick();
  }

  /** Spins (under a millisecond) until Date.now() moves on: then it is exact to the microsecond. */
  private static offsetAtTick(): number {
    const start = Date.now();
    let wall = start;
    while (wall === start) wall = Date.now();
    return wall - performance.now();
  }
}

async function measure(
  stack: LocalStack,
  flags: PhasesFlags,
  context: BenchContext,
  metricsAddress: string | undefined,
): Promise<Figure[]> {
  const db = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
  const connection = await Connection.connect({ address: stack.temporalAddress });
  const temporal = new Client({ connection, namespace: stack.namespace });
  const baseline = await startBaseline(stack);
  const deps: TrialDeps = { gatewayUrl: stack.gatewayUrl, db, clock: new ClientClock(), sockets: [] };
  try {
    const runId = randomBytes(4).toString('hex');
    const trials: Trial[] = [];
    const samples = await measureInterleaved(
      async (i, signal) => {
        const trial = await runTrial(deps, `phases-${runId}-${i}`, signal);
        if (i >= flags.warmup) trials.push(trial);
        return trial.coldStart.reply - trial.coldStart.request;
      },
      () => baseline.run(),
      flags,
      context,
    );

    context.log.info({ actors: trials.length }, 'reading histories and command rows');
    const rows = await dbMarks(
      db,
      trials.map((t) => t.actorId),
    );
    const allocated = await allocationLogTimes(stack.logDir);
    // A log level above info (DORMOUSE_LOG_LEVEL) leaves nothing to cut at.
    const parts = allocated.size > 0 ? WORKFLOW_TASK_PARTS : [];
    if (parts.length === 0) context.log.warn('no "actor allocated" in the worker logs: workflow-task is not split');
    const cold: Marks[] = [];
    const wake: Marks[] = [];
    const shapes: { cold: StartShape[]; wake: StartShape[] } = { cold: [], wake: [] };
    for (const trial of trials) {
      const events = await historyEvents(temporal, trial.actorId);
      const dbRow = rows.get(trial.actorId);
      const coldRun = workflowMarks(events, 1, 'start');
      const wakeRun = workflowMarks(events, 2, 'wake');
      cold.push({
        ...trial.coldStart,
        actorInserted: dbRow?.actorInserted,
        allocated: allocated.get(`${trial.actorId}/1`),
        ...dbRow?.commands.get(1),
        ...coldRun.marks,
      });
      wake.push({
        ...trial.wake,
        allocated: allocated.get(`${trial.actorId}/2`),
        ...dbRow?.commands.get(2),
        ...wakeRun.marks,
      });
      shapes.cold.push(coldRun.shape);
      shapes.wake.push(wakeRun.shape);
    }
    context.log.info(
      { coldStart: summarise(shapes.cold), wake: summarise(shapes.wake) },
      'how the workflow ran the starts',
    );
    const coldFigures = scenarioFigures('phases/cold-start', COLD_START_PHASES, parts, cold, samples.baseline);
    const workflowTask = coldFigures.find((f) => f.bench === 'phases/cold-start/workflow-task') as LatencyFigure;
    const localActivities = metricsAddress ? await localActivityMeans(metricsAddress) : [];
    return [
      ...coldFigures,
      ...scenarioFigures('phases/wake', WAKE_PHASES, parts, wake, samples.baseline),
      ...localActivities.map(({ type, count, meanMs }) =>
        quantityOf(
          `phases/local-activity/${type}`,
          count,
          { value: meanMs, unit: 'ms' },
          { name: workflowTask.bench, value: workflowTask.median_ms },
        ),
      ),
    ];
  } finally {
    for (const ws of deps.sockets) ws.close();
    await baseline.close();
    await connection.close();
    await db.end();
  }
}

/** The local-activity metric this benchmark reads, a histogram in milliseconds per activity type. */
const LOCAL_ACTIVITY_LATENCY = /^(\w*local_activity_succeed_endtoend_latency\w*)_(sum|count)\{([^}]*)\} (\S+)$/;

/** Per activity type, how many local activities succeeded and their mean duration (SDK metrics). */
async function localActivityMeans(address: string): Promise<{ type: string; count: number; meanMs: number }[]> {
  const text = await (await fetch(`http://${address}/metrics`)).text();
  const byType = new Map<string, { sum: number; count: number; seconds: boolean }>();
  for (const line of text.split('\n')) {
    const match = LOCAL_ACTIVITY_LATENCY.exec(line);
    if (!match) continue;
    const [, name, part, labels, value] = match;
    const type = /activity_type="([^"]*)"/.exec(labels!)?.[1] ?? '?';
    const entry = byType.get(type) ?? { sum: 0, count: 0, seconds: name!.endsWith('_seconds') };
    entry[part as 'sum' | 'count'] += Number(value);
    byType.set(type, entry);
  }
  return [...byType].map(([type, { sum, count, seconds }]) => ({
    type,
    count,
    meanMs: ((seconds ? 1000 : 1) * sum) / count,
  }));
}

/** When each worker logged `actor allocated`, by `actorId/generation` (pino `time`, ms since the epoch). */
async function allocationLogTimes(logDir: string): Promise<Map<string, number>> {
  const times = new Map<string, number>();
  const files = (await readdir(logDir)).filter((f) => /^worker-\d+\.log$/.test(f));
  for (const file of files) {
    for (const line of (await readFile(join(logDir, file), 'utf8')).split('\n')) {
      if (!line.includes('"actor allocated"')) continue;
      const entry = JSON.parse(line) as { time: number; actorId: string; generation: number };
      times.set(`${entry.actorId}/${entry.generation}`, entry.time);
    }
  }
  return times;
}

/** One actor: its cold start (timed as `cold-start`), then, once asleep, its wake (timed as `wake`). */
/** What every trial uses; `sockets` collects the clients, closed at the end. */
interface TrialDeps {
  gatewayUrl: string;
  db: pg.Pool;
  clock: ClientClock;
  sockets: WebSocket[];
}

async function runTrial(
  { gatewayUrl, db, clock, sockets }: TrialDeps,
  key: string,
  signal: AbortSignal,
): Promise<Trial> {
  clock.anchor();
  const coldRequest = clock.now();
  await createAndReach(gatewayUrl, key, signal);
  const coldReply = clock.now();

  const { rows } = await db.query<{ actor_id: string }>(
    "SELECT actor_id FROM actors WHERE name = 'chat' AND key = $1 AND destroyed_at IS NULL",
    [key],
  );
  const actorId = rows[0]?.actor_id;
  if (!actorId) throw new Error(`no live actor with key ${key}`);
  const ws = await connect(gatewayUrl, actorId);
  sockets.push(ws);
  await roundTrip(ws, 'hello', clock);
  await putToSleep(gatewayUrl, actorId, signal);

  const wakeRequest = clock.now();
  const wakeReply = await roundTrip(ws, 'wake up', clock);
  return {
    actorId,
    coldStart: { request: coldRequest, reply: coldReply },
    wake: { request: wakeRequest, reply: wakeReply },
  };
}

async function connect(gatewayUrl: string, actorId: string): Promise<WebSocket> {
  const ws = new WebSocket(`${gatewayUrl.replace(/^http/, 'ws')}/actors/${actorId}/ws?name=bench`);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return ws;
}

/** Sends one message; resolves with the client time its broadcast (the only traffic) arrived. */
function roundTrip(ws: WebSocket, text: string, clock: ClientClock): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no broadcast of "${text}" within ${STEP_TIMEOUT_MS} ms`)),
      STEP_TIMEOUT_MS,
    );
    ws.once('message', (data) => {
      const at = clock.now();
      clearTimeout(timer);
      const { text: echoed } = JSON.parse(wsText(data)) as { text: string };
      if (echoed === text) resolve(at);
      else reject(new Error(`expected the broadcast of "${text}", got "${echoed}"`));
    });
    ws.send(text);
  });
}

async function putToSleep(gatewayUrl: string, actorId: string, signal: AbortSignal): Promise<void> {
  const url = `${gatewayUrl}/actors/${actorId}`;
  const response = await fetch(`${url}/sleep`, { method: 'POST', signal });
  if (response.status !== 202) throw new Error(`sleep answered ${response.status}`);
  await waitFor(
    async () =>
      ((await (await fetch(url, { signal })).json()) as { actor: { state: string } }).actor.state === 'sleeping',
    { timeoutMs: STEP_TIMEOUT_MS, intervalMs: 20, message: 'the actor asleep', signal },
  );
}

interface ActorRows {
  actorInserted: number;
  /** Per generation, its start command's row. */
  commands: Map<number, { commandInserted: number; commandAcked?: number }>;
}

/** The Postgres timestamps, in ms since the epoch with their microseconds. */
async function dbMarks(db: pg.Pool, actorIds: string[]): Promise<Map<string, ActorRows>> {
  const byActor = new Map<string, ActorRows>();
  const actors = await db.query<{ actor_id: string; inserted: number }>(
    `SELECT actor_id, extract(epoch FROM created_at)::float8 * 1000 AS inserted
     FROM actors WHERE actor_id = ANY($1::uuid[])`,
    [actorIds],
  );
  for (const r of actors.rows) byActor.set(r.actor_id, { actorInserted: r.inserted, commands: new Map() });
  const commands = await db.query<{ actor_id: string; generation: number; inserted: number; acked: number | null }>(
    `SELECT actor_id, generation,
            extract(epoch FROM created_at)::float8 * 1000 AS inserted,
            extract(epoch FROM acked_at)::float8 * 1000 AS acked
     FROM runner_commands WHERE actor_id = ANY($1::uuid[]) AND payload->>'kind' = 'startActor'`,
    [actorIds],
  );
  for (const r of commands.rows) {
    byActor.get(r.actor_id)?.commands.set(r.generation, {
      commandInserted: r.inserted,
      ...(r.acked === null ? {} : { commandAcked: r.acked }),
    });
  }
  return byActor;
}

/** The actor's history; a trial's actor never lives long enough to continue as new. */
async function historyEvents(client: Client, actorId: string): Promise<HistoryEvent[]> {
  const history = await client.workflow.getHandle(actorWorkflowId(actorId)).fetchHistory();
  const events = history.events ?? [];
  if (events.some((e) => e.workflowExecutionContinuedAsNewEventAttributes))
    throw new Error(`actor ${actorId}: its workflow continued as new during the trial`);
  return events;
}

/**
 * The start of `generation` as the history records it: the marks, and the shape of the
 * workflow's work between its trigger (the execution's start, or the wake signal) and the send.
 */
function workflowMarks(
  events: HistoryEvent[],
  generation: number,
  trigger: 'start' | 'wake',
): { marks: Marks; shape: StartShape } {
  const where = `generation ${generation}`;
  const send = events.find((e) => {
    const a = e.activityTaskScheduledEventAttributes;
    if (a?.activityType?.name !== 'insertAndSendCommands') return false;
    const input = decodeFirst(a.input?.payloads) as InsertAndSendInput;
    return input.commands.some((c) => c.command.kind === 'startActor' && c.generation === generation);
  });
  if (!send) throw new Error(`${where}: no insertAndSendCommands with its StartActor`);
  const sendId = Number(send.eventId);
  const before = events.filter((e) => Number(e.eventId) < sendId);
  const triggerEvent =
    trigger === 'start'
      ? before.find((e) => e.workflowExecutionStartedEventAttributes)
      : before.findLast((e) => e.workflowExecutionSignaledEventAttributes?.signalName === wakeSignal.name);
  if (!triggerEvent) throw new Error(`${where}: no ${trigger} before the send`);
  const span = before.filter((e) => Number(e.eventId) > Number(triggerEvent.eventId));
  const taskStarted = span.find((e) => e.workflowTaskStartedEventAttributes);
  if (!taskStarted) throw new Error(`${where}: no workflow task after the ${trigger}`);

  const completion = (scheduledId: number) =>
    events.find((e) => Number(e.activityTaskCompletedEventAttributes?.scheduledEventId) === scheduledId);
  const sendStarted = events.find((e) => Number(e.activityTaskStartedEventAttributes?.scheduledEventId) === sendId);
  const running = events.find((e) => {
    const a = e.workflowExecutionSignaledEventAttributes;
    if (a?.signalName !== eventsSignal.name) return false;
    const batch = decodeFirst(a.input?.payloads) as EventEnvelope[];
    return batch.some((b) => b.generation === generation && b.event.kind === 'running');
  });
  const record = events.find((e) => {
    const a = e.activityTaskScheduledEventAttributes;
    if (a?.activityType?.name !== 'recordActorState') return false;
    const change = decodeFirst(a.input?.payloads) as StateChange;
    return change.generation === generation && change.state === 'running';
  });
  // A record that ran as a local activity (LOCAL_STATE_RECORDS) is the first recordActorState
  // marker after the running signal, written with the completion of the task that ran it.
  const recordMarker =
    running &&
    events.find((e) => Number(e.eventId) > Number(running.eventId) && localActivityType(e) === 'recordActorState');
  const recorded = record ? completion(Number(record.eventId)) : recordMarker;
  const sendCompleted = completion(sendId);
  return {
    marks: {
      [trigger === 'start' ? 'workflowStarted' : 'wakeSignalled']: eventTimeMs(triggerEvent),
      taskStarted: eventTimeMs(taskStarted),
      sendScheduled: eventTimeMs(send),
      ...(sendStarted && { sendStarted: eventTimeMs(sendStarted) }),
      ...(sendCompleted && { sendCompleted: eventTimeMs(sendCompleted) }),
      ...(running && { runningSignalled: eventTimeMs(running) }),
      ...(recorded && { runningRecorded: eventTimeMs(recorded) }),
    },
    shape: {
      workflowTasks: span.filter((e) => e.workflowTaskStartedEventAttributes).length,
      localActivities: span.filter((e) => e.markerRecordedEventAttributes?.markerName === LOCAL_ACTIVITY_MARKER).length,
      regularFallbacks: span.filter((e) => {
        const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
        return name === 'allocateActor' || name === 'listHibernatingRequests'; // after a failed local read
      }).length,
    },
  };
}

/** The activity type of a local activity's marker, or undefined for any other event. */
function localActivityType(event: HistoryEvent): string | undefined {
  const marker = event.markerRecordedEventAttributes;
  if (marker?.markerName !== LOCAL_ACTIVITY_MARKER) return undefined;
  return (decodeFirst(marker.details?.data?.payloads) as { activity_type?: string } | undefined)?.activity_type;
}

/** How many starts took each shape, e.g. `{"1 task, 2 local, 0 fallback": 50}`. */
function summarise(shapes: StartShape[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const s of shapes) {
    const key = `${s.workflowTasks} task(s), ${s.localActivities} local, ${s.regularFallbacks} fallback`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/** The total, each phase on the path, what the phase medians leave out, the parts of a phase, the off-path work. */
function scenarioFigures(bench: string, path: Phase[], parts: Phase[], trials: Marks[], baseline: number[]): Figure[] {
  const first = path[0]!.from;
  const last = path.at(-1)!.to;
  const totals = trials.map((t, i) => between(t, first, last, `${bench} trial ${i}`));
  const total = figureOf(bench, BASELINE_NAME, { subject: totals, baseline });
  const phaseFigures = path.map((phase) => phaseFigure(bench, phase, trials, totals));
  const unaccounted = total.median_ms - phaseFigures.reduce((sum, f) => sum + f.median_ms, 0);
  return [
    total,
    ...phaseFigures,
    quantityOf(
      `${bench}/unaccounted`,
      trials.length,
      { value: unaccounted, unit: 'ms' },
      { name: bench, value: total.median_ms },
    ),
    ...parts.map((phase) => phaseFigure(bench, phase, trials, totals)),
    ...OFF_PATH.map((phase) => phaseFigure(bench, phase, trials, totals)),
  ];
}

function phaseFigure(bench: string, phase: Phase, trials: Marks[], totals: number[]): LatencyFigure {
  const durations = trials.map((t, i) => between(t, phase.from, phase.to, `${bench} trial ${i}`));
  return figureOf(`${bench}/${phase.name}`, bench, { subject: durations, baseline: totals });
}

function between(marks: Marks, from: Mark, to: Mark, where: string): number {
  const start = marks[from];
  const end = marks[to];
  if (start === undefined || end === undefined)
    throw new Error(`${where}: no ${start === undefined ? from : to} recorded`);
  return end - start;
}

/** A history event's server time in ms since the epoch, with its sub-millisecond digits. */
function eventTimeMs(event: HistoryEvent): number {
  const t = event.eventTime;
  if (!t) throw new Error(`history event ${String(event.eventId)} has no time`);
  return Number(t.seconds ?? 0) * 1000 + (t.nanos ?? 0) / 1e6;
}

function decodeFirst(payloads: temporal.api.common.v1.IPayload[] | null | undefined): unknown {
  const payload = payloads?.[0];
  return payload ? defaultPayloadConverter.fromPayload(payload) : undefined;
}
