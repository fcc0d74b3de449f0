/**
 * The CLI's side of the gateway: where it is (`--gateway`, else DORMOUSE_GATEWAY_URL), the
 * management API of DESIGN §6 with the admin token, and every failure turned into a message a
 * person can act on (the CLI prints it and exits 1).
 */
import { InvalidArgumentError, Option } from 'commander';
import { z } from 'zod';
import type { Config } from '../config.js';
import { errorMessage } from '../errors.js';

/** Long enough for a create while Temporal is slow; a gateway that hangs must not hang the CLI. */
const REQUEST_TIMEOUT_MS = 30_000;

export interface GatewayOptions {
  gateway?: string;
  token?: string;
}

export interface GatewayTarget {
  /** Base URL without a trailing slash. */
  url: string;
  token: string | undefined;
}

export function gatewayOption(): Option {
  return new Option(
    '--gateway <url>',
    'the gateway (default: DORMOUSE_GATEWAY_URL, else http://127.0.0.1:6420)',
  ).argParser(parseGatewayUrl);
}

export function tokenOption(): Option {
  return new Option('--token <token>', 'the admin token (default: DORMOUSE_ADMIN_TOKEN)');
}

function parseGatewayUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError('not a URL.');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new InvalidArgumentError('must be an http:// or https:// URL.');
  return value;
}

export function gatewayTarget(options: GatewayOptions, config: Config): GatewayTarget {
  return {
    url: (options.gateway ?? config.gateway.url).replace(/\/+$/, ''),
    token: options.token ?? config.auth.adminToken,
  };
}

/** The management API; every method resolves with the API's JSON document or rejects with a message. */
export class ManagementApi {
  constructor(private readonly target: GatewayTarget) {}

  async request<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.target.token !== undefined) headers.authorization = `Bearer ${this.target.token}`;
    let status: number;
    let text: string;
    try {
      const response = await fetch(`${this.target.url}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      status = response.status;
      text = await response.text();
    } catch (err) {
      throw new Error(unreachableMessage(this.target.url, err), { cause: err });
    }
    if (status < 200 || status >= 300) throw new Error(this.refusal(status, text));
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new Error(
        `the gateway at ${this.target.url} answered ${method} ${path} with something other than JSON: ${excerpt(text)}`,
      );
    }
  }

  /** The API's error, with what to do about it when the token was the problem. */
  private refusal(status: number, body: string): string {
    const message = httpErrorMessage(status, body);
    if (status !== 401 && status !== 403) return message;
    return `${message}; ${this.target.token === undefined ? 'pass --token or set DORMOUSE_ADMIN_TOKEN' : 'check the admin token'}`;
  }
}

const apiError = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

/** `{error: {code, message}}` as "message (404 actor_not_found)"; anything else as it came. */
export function httpErrorMessage(status: number, body: string): string {
  const parsed = apiError.safeParse(parseJson(body));
  if (parsed.success) return `${parsed.data.error.message} (${status} ${parsed.data.error.code})`;
  return `the gateway answered ${status}${body ? `: ${excerpt(body)}` : ''}`;
}

/** Why a request never got an answer, from fetch's or ws's error. */
export function unreachableMessage(url: string, err: unknown): string {
  if (err instanceof Error && err.name === 'TimeoutError')
    return `the gateway at ${url} did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`;
  const cause = rootCause(err);
  const code = (cause as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED') return `cannot reach the gateway at ${url}: is it running?`;
  return `cannot reach the gateway at ${url}: ${errorMessage(cause)}`;
}

/** fetch reports "fetch failed" and keeps the reason (ECONNREFUSED, ENOTFOUND, ...) in its cause. */
function rootCause(err: unknown): unknown {
  let e = err;
  while (e instanceof Error && e.cause !== undefined) e = e.cause;
  return e;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function excerpt(text: string): string {
  const line = text.trim().replace(/\s+/g, ' ');
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
