/**
 * Every error Dormouse reports to a client, a runner or an operator, in one catalog. Domain code
 * throws these by name; only the edges translate them: the HTTP error handler (JSON
 * `{error: {code, message}}` with `httpStatus`), a refused WebSocket upgrade (the same JSON), and
 * an open client socket (closed with `closeCode`). One code means one status everywhere.
 *
 * Activities fail with `InvariantViolation` when the registry contradicts the workflow: no retry
 * can mend that, so the workflow lists it in `nonRetryableErrorTypes` (its `name` is the type).
 */
import { ClientCloseCode } from './protocol/client-close-codes.js';

export abstract class DormouseError extends Error {
  /** Stable, machine-readable: clients branch on it. */
  abstract readonly code: string;
  abstract readonly httpStatus: number;
  /** The close code an open client WebSocket gets for this error. */
  readonly closeCode: number = ClientCloseCode.InternalError;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    // The class name is the error's type in logs and in Temporal failures.
    this.name = new.target.name;
  }

  toJSON(): { error: { code: string; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

// --- Bad input (400) and access (401) -------------------------------------------------------

export class BadRequest extends DormouseError {
  readonly code: string;
  readonly httpStatus = 400;
  constructor(message: string, code: 'bad_request' | 'body_too_large' = 'bad_request') {
    super(message);
    this.code = code;
  }
}

export class Unauthorized extends DormouseError {
  readonly code = 'unauthorized';
  readonly httpStatus = 401;
}

export class RouteNotFound extends DormouseError {
  readonly code = 'not_found';
  readonly httpStatus = 404;
}

// --- Actors ---------------------------------------------------------------------------------

export class ActorNotFound extends DormouseError {
  readonly code = 'actor_not_found';
  readonly httpStatus = 404;
  override readonly closeCode = ClientCloseCode.ActorNotFound;
  constructor(actorId: string) {
    super(`no actor ${actorId}`);
  }
}

/** The actor existed and was destroyed: gone for good, whatever was asked of it. */
export class ActorDestroyed extends DormouseError {
  readonly code = 'actor_destroyed';
  readonly httpStatus = 410;
  override readonly closeCode = ClientCloseCode.ActorDestroyed;
  constructor(actorId: string) {
    super(`actor ${actorId} was destroyed`);
  }
}

export class ActorExists extends DormouseError {
  readonly code = 'actor_exists';
  readonly httpStatus = 409;
}

/** The actor did not become ready (running, reachable) within the wake timeout. */
export class ActorUnavailable extends DormouseError {
  readonly code = 'actor_unavailable';
  readonly httpStatus = 503;
  override readonly closeCode = ClientCloseCode.ActorUnavailable;
}

/** The actor ran but did not answer a tunnelled request within the request timeout. */
export class ActorTimeout extends DormouseError {
  readonly code = 'actor_timeout';
  readonly httpStatus = 504;
  override readonly closeCode = ClientCloseCode.ActorUnavailable;
}

/** The actor is placed on a runner that is not connected to this gateway. */
export class RunnerUnreachable extends DormouseError {
  readonly code = 'runner_unreachable';
  readonly httpStatus = 503;
  override readonly closeCode = ClientCloseCode.ActorUnavailable;
}

/**
 * The runner does not host that actor generation (any more): it stopped or moved meanwhile. The
 * gateway waits for the next generation and retries; a client sees it only as a timeout.
 */
export class NotHosted extends DormouseError {
  readonly code = 'not_hosted';
  readonly httpStatus = 503;
  override readonly closeCode = ClientCloseCode.ActorUnavailable;
}

// --- Infrastructure -------------------------------------------------------------------------

/** The actor's row exists but its workflow could not be started yet; the reaper starts it. */
export class TemporalUnavailable extends DormouseError {
  readonly code = 'temporal_unavailable';
  readonly httpStatus = 503;
}

/**
 * A runner wrote for an actor generation the registry no longer places on it (DESIGN §3): its
 * successor owns the actor now. Fatal for that generation on that runner.
 */
export class Fenced extends DormouseError {
  readonly code = 'fenced';
  readonly httpStatus = 409;
}

/**
 * Anything the edges catch that is not one of these: a bug or a broken dependency. Its message is
 * all a client sees; the edge logs the original.
 */
export class InternalError extends DormouseError {
  readonly code = 'internal';
  readonly httpStatus = 500;
  constructor(message = 'internal error') {
    super(message);
  }
}

/** The registry contradicts what the caller knows to be true (a bug, or a hand-edited row). */
export class InvariantViolation extends DormouseError {
  readonly code = 'internal';
  readonly httpStatus = 500;
}

/** The workflow never retries these activity failures: a retry would meet the same contradiction. */
export const NON_RETRYABLE_ERROR_TYPES: string[] = ['InvariantViolation'];

/** The message of anything thrown, for logs and CLI output. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
