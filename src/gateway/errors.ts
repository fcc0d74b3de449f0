/**
 * The HTTP edge of the error model (src/errors.ts): whatever a route throws leaves as JSON
 * `{error: {code, message}}` with the status its class names. Fastify's own 4xx errors (bad
 * JSON, body too large, bad content type) are the client's: a 400. Anything else is a bug: a
 * logged 500 `internal` that tells the client nothing more.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodError } from 'zod';
import { BadRequest, DormouseError, InternalError, RouteNotFound } from '../errors.js';

export function zodMessage(error: ZodError): string {
  return error.issues.map((i) => `${i.path.length ? i.path.join('.') : 'body'}: ${i.message}`).join('; ');
}

export function errorHandler(error: FastifyError | DormouseError, request: FastifyRequest, reply: FastifyReply): void {
  const err = asDormouseError(error);
  if (err.httpStatus === 500) request.log.error({ err: error }, 'request failed');
  void reply.status(err.httpStatus).send(err.toJSON());
}

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): void {
  const err = new RouteNotFound(`no route ${request.method} ${request.url}`);
  void reply.status(err.httpStatus).send(err.toJSON());
}

function asDormouseError(error: FastifyError | DormouseError): DormouseError {
  if (error instanceof DormouseError) return error;
  const status = error.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    return new BadRequest(
      error.message,
      error.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'body_too_large' : 'bad_request',
    );
  }
  return new InternalError();
}
