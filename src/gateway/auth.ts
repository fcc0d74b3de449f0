/**
 * Access control at the gateway: the admin token for the management API, per-pool tokens for
 * runners. Tokens are compared in constant time. With no tokens configured (development mode
 * only; see `requireGatewayTokens`), everything is open.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** The token of an `Authorization: Bearer <token>` header, if any. */
export function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  const match = /^Bearer\s+(\S+)$/i.exec(headers.authorization ?? '');
  return match?.[1];
}

/** Constant-time equality (hashing first makes the lengths equal too). */
export function sameToken(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  return timingSafeEqual(createHash('sha256').update(given).digest(), createHash('sha256').update(expected).digest());
}

/** The pool whose token was presented; undefined if it is no pool's. */
export function poolOfToken(runnerTokens: ReadonlyMap<string, string>, token: string | undefined): string | undefined {
  for (const [pool, expected] of runnerTokens) if (sameToken(token, expected)) return pool;
  return undefined;
}
