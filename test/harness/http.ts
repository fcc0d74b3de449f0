/**
 * Small JSON-over-fetch helpers for the gateway's management API (DESIGN §6). They return the
 * status and the parsed body instead of throwing on 4xx/5xx, so tests can assert on errors too.
 */

export interface JsonResponse<T = unknown> {
  status: number;
  /** Parsed JSON; the raw text if the body is not JSON; null if empty. */
  body: T;
  headers: Headers;
}

/** The `{actor}` of the management API: at least these fields. */
export interface ActorView {
  actorId: string;
  name: string;
  key: string | null;
  state: string;
  generation: number;
  runnerId: string | null;
  createdAt: string;
  [field: string]: unknown;
}

export interface ApiError {
  error: { code: string; message: string };
}

export type CrashPolicy = 'restart' | 'sleep' | 'destroy';

const REQUEST_TIMEOUT_MS = 30_000;

/** One bounded request; `body` is sent as JSON when given. */
export async function requestJson<T = unknown>(
  method: string,
  url: string,
  body?: unknown,
  options: { timeoutMs?: number } = {},
): Promise<JsonResponse<T>> {
  const response = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(options.timeoutMs ?? REQUEST_TIMEOUT_MS),
  });
  const text = await response.text();
  return { status: response.status, body: parseBody(text) as T, headers: response.headers };
}

function parseBody(text: string): unknown {
  if (text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export const getJson = <T = unknown>(url: string): Promise<JsonResponse<T>> => requestJson<T>('GET', url);
export const postJson = <T = unknown>(url: string, body?: unknown): Promise<JsonResponse<T>> =>
  requestJson<T>('POST', url, body);
export const putJson = <T = unknown>(url: string, body?: unknown): Promise<JsonResponse<T>> =>
  requestJson<T>('PUT', url, body);
export const deleteJson = <T = unknown>(url: string): Promise<JsonResponse<T>> => requestJson<T>('DELETE', url);

type ActorResponse = JsonResponse<{ actor: ActorView } | ApiError>;

/** The §6 management API of one gateway. */
export interface ActorsApi {
  create(body: {
    name: string;
    key?: string | null;
    input?: unknown;
    crashPolicy?: CrashPolicy;
  }): Promise<ActorResponse>;
  getOrCreate(body: { name: string; key: string; input?: unknown; crashPolicy?: CrashPolicy }): Promise<ActorResponse>;
  get(actorId: string): Promise<ActorResponse>;
  list(query?: { name?: string; key?: string }): Promise<JsonResponse<{ actors: ActorView[] } | ApiError>>;
  destroy(actorId: string): Promise<JsonResponse>;
  sleep(actorId: string): Promise<JsonResponse>;
  wake(actorId: string): Promise<JsonResponse>;
  reschedule(actorId: string): Promise<JsonResponse>;
}

export function actorsApi(gatewayUrl: string): ActorsApi {
  const actorUrl = (actorId: string, suffix = ''): string =>
    `${gatewayUrl}/actors/${encodeURIComponent(actorId)}${suffix}`;
  return {
    create: (body) => postJson(`${gatewayUrl}/actors`, body),
    getOrCreate: (body) => putJson(`${gatewayUrl}/actors`, body),
    get: (actorId) => getJson(actorUrl(actorId)),
    list: (query = {}) => getJson(`${gatewayUrl}/actors?${new URLSearchParams(definedEntries(query)).toString()}`),
    destroy: (actorId) => deleteJson(actorUrl(actorId)),
    sleep: (actorId) => postJson(actorUrl(actorId, '/sleep')),
    wake: (actorId) => postJson(actorUrl(actorId, '/wake')),
    reschedule: (actorId) => postJson(actorUrl(actorId, '/reschedule')),
  };
}

function definedEntries(query: Record<string, string | undefined>): [string, string][] {
  return Object.entries(query).filter((entry): entry is [string, string] => entry[1] !== undefined);
}
