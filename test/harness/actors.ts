/** Helpers for tests that drive actors through the gateway and read what the runners did. */
import { readFile } from 'node:fs/promises';
import type { NodeProcess } from '../../dev/processes.js';
import type { RunnerCommand } from '../../src/protocol/runner-protocol.js';
import { actorsApi, type ActorView, type CrashPolicy } from './http.js';
import { waitFor } from './wait.js';

export type Api = ReturnType<typeof actorsApi>;

/** Creates an actor (expects 201) and returns it. */
export async function createActor(
  api: Api,
  body: { name: string; key?: string | null; input?: unknown; crashPolicy?: CrashPolicy },
): Promise<ActorView> {
  const res = await api.create(body);
  if (res.status !== 201 || !('actor' in res.body))
    throw new Error(`create failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.actor;
}

export async function getActor(api: Api, actorId: string): Promise<ActorView> {
  const res = await api.get(actorId);
  if (res.status !== 200 || !('actor' in res.body))
    throw new Error(`get failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.actor;
}

/** Waits until the registry shows the actor matching `predicate`. */
export async function waitForActor(
  api: Api,
  actorId: string,
  predicate: (actor: ActorView) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<ActorView> {
  return waitFor(
    async () => {
      const actor = await getActor(api, actorId);
      return predicate(actor) ? actor : undefined;
    },
    { timeoutMs, intervalMs: 50, message: `actor ${actorId}: ${what}` },
  );
}

/** What the demo `chat` actor answers on `GET /state` (examples/chat.ts). */
export interface ChatView {
  seq: number;
  connections: number;
  generation: number;
}

/** A request tunnelled to the actor, answered with its status and parsed JSON (or text). */
export async function actorRequest<T = unknown>(
  gatewayUrl: string,
  actorId: string,
  path: string,
  init: { method?: string; json?: unknown; timeoutMs?: number } = {},
): Promise<{ status: number; body: T }> {
  const response = await fetch(`${gatewayUrl}/actors/${actorId}/http${path}`, {
    method: init.method ?? (init.json === undefined ? 'GET' : 'POST'),
    headers: init.json === undefined ? {} : { 'content-type': 'application/json' },
    body: init.json === undefined ? undefined : JSON.stringify(init.json),
    signal: AbortSignal.timeout(init.timeoutMs ?? 60_000),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, body: body as T };
}

export interface AppliedCommand {
  idx: number;
  command: RunnerCommand;
}

/** The commands a runner process applied, from its debug log (`command applied`). */
export async function appliedCommands(runner: NodeProcess, actorId?: string): Promise<AppliedCommand[]> {
  const text = await readFile(runner.logFile, 'utf8');
  const applied: AppliedCommand[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    const entry = JSON.parse(line) as { msg?: string; idx?: number; command?: RunnerCommand };
    if (entry.msg !== 'command applied' || !entry.command || entry.idx === undefined) continue;
    if (actorId && entry.command.actorId !== actorId) continue;
    applied.push({ idx: entry.idx, command: entry.command });
  }
  return applied;
}
