import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { ensureApplicationFailure } from '@temporalio/common';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allocateActor } from '../../src/db/actors.js';
import type { Db } from '../../src/db/pool.js';
import * as catalog from '../../src/errors.js';
import {
  ActorDestroyed,
  ActorExists,
  ActorNotFound,
  ActorTimeout,
  ActorUnavailable,
  BadRequest,
  DormouseError,
  Fenced,
  InternalError,
  InvariantViolation,
  NON_RETRYABLE_ERROR_TYPES,
  NotHosted,
  RouteNotFound,
  RunnerUnreachable,
  TemporalUnavailable,
  Unauthorized,
} from '../../src/errors.js';
import { errorHandler, notFoundHandler } from '../../src/gateway/errors.js';
import { rejectUpgrade } from '../../src/gateway/reject-upgrade.js';
import { ClientCloseCode } from '../../src/protocol/client-close-codes.js';

interface ErrorBody {
  error: { code: string; message: string };
}

const actorId = randomUUID();

/** Every error of the catalog, with the status, code and close code the public contract gives it. */
const CATALOG: [DormouseError, number, string, number][] = [
  [new BadRequest('bad'), 400, 'bad_request', ClientCloseCode.InternalError],
  [new BadRequest('too big', 'body_too_large'), 400, 'body_too_large', ClientCloseCode.InternalError],
  [new Unauthorized('no token'), 401, 'unauthorized', ClientCloseCode.InternalError],
  [new RouteNotFound('no route'), 404, 'not_found', ClientCloseCode.InternalError],
  [new ActorNotFound(actorId), 404, 'actor_not_found', ClientCloseCode.ActorNotFound],
  [new ActorDestroyed(actorId), 410, 'actor_destroyed', ClientCloseCode.ActorDestroyed],
  [new ActorExists('exists'), 409, 'actor_exists', ClientCloseCode.InternalError],
  [new ActorUnavailable('not ready'), 503, 'actor_unavailable', ClientCloseCode.ActorUnavailable],
  [new ActorTimeout('no answer'), 504, 'actor_timeout', ClientCloseCode.ActorUnavailable],
  [new RunnerUnreachable('elsewhere'), 503, 'runner_unreachable', ClientCloseCode.ActorUnavailable],
  [new NotHosted('moved'), 503, 'not_hosted', ClientCloseCode.ActorUnavailable],
  [new TemporalUnavailable('later'), 503, 'temporal_unavailable', ClientCloseCode.InternalError],
  [new Fenced('fenced'), 409, 'fenced', ClientCloseCode.InternalError],
  [new InternalError(), 500, 'internal', ClientCloseCode.InternalError],
  [new InvariantViolation('contradiction'), 500, 'internal', ClientCloseCode.InternalError],
];

describe('the error catalog', () => {
  it('lists every error class here, so each has its status checked', () => {
    const classes = Object.values(catalog).filter(
      (v) => typeof v === 'function' && v.prototype instanceof DormouseError,
    );
    expect(new Set(CATALOG.map(([err]) => err.constructor))).toEqual(new Set(classes));
  });

  it('gives one code one status', () => {
    const statusOf = new Map<string, number>();
    for (const [err] of CATALOG) {
      expect(statusOf.get(err.code) ?? err.httpStatus, err.code).toBe(err.httpStatus);
      statusOf.set(err.code, err.httpStatus);
    }
  });

  it.each(CATALOG)('%s: status, code and close code', (err, status, code, closeCode) => {
    expect({ status: err.httpStatus, code: err.code, closeCode: err.closeCode }).toEqual({ status, code, closeCode });
    expect(err.toJSON()).toEqual({ error: { code, message: err.message } });
    expect(err.name).toBe(err.constructor.name);
  });

  it('names the actor in the actor errors', () => {
    expect(new ActorNotFound(actorId).message).toBe(`no actor ${actorId}`);
    expect(new ActorDestroyed(actorId).message).toBe(`actor ${actorId} was destroyed`);
  });
});

describe('the HTTP edge', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = Fastify({ bodyLimit: 16 });
    app.setErrorHandler(errorHandler);
    app.setNotFoundHandler(notFoundHandler);
    app.get('/throw/:i', async (request) => {
      throw CATALOG[Number((request.params as { i: string }).i)]![0];
    });
    app.get('/bug', async () => {
      throw new Error('secret detail');
    });
    app.post('/echo', async (request) => request.body);
    await app.ready();
  });
  afterAll(() => app.close());

  it.each(CATALOG.map(([err, status, code], i) => [err.name, i, status, code] as const))(
    '%s answers with its status and JSON',
    async (_name, i, status, code) => {
      const res = await app.inject({ method: 'GET', url: `/throw/${i}` });
      expect(res.statusCode).toBe(status);
      expect(res.json()).toEqual({ error: { code, message: CATALOG[i]![0].message } });
    },
  );

  it("turns Fastify's own 4xx into a 400", async () => {
    const badJson = await app.inject({
      method: 'POST',
      url: '/echo',
      headers: { 'content-type': 'application/json' },
      payload: '{',
    });
    expect(badJson.statusCode).toBe(400);
    expect(badJson.json<ErrorBody>().error.code).toBe('bad_request');
    const tooBig = await app.inject({
      method: 'POST',
      url: '/echo',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ a: 'x'.repeat(100) }),
    });
    expect(tooBig.statusCode).toBe(400);
    expect(tooBig.json<ErrorBody>().error.code).toBe('body_too_large');
  });

  it('answers anything else with a 500 that tells nothing', async () => {
    const res = await app.inject({ method: 'GET', url: '/bug' });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ error: { code: 'internal', message: 'internal error' } });
  });

  it('answers an unknown route with not_found', async () => {
    const res = await app.inject({ method: 'GET', url: '/nowhere' });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ error: { code: 'not_found', message: 'no route GET /nowhere' } });
  });
});

describe('the upgrade edge', () => {
  it('refuses with the status and JSON the HTTP edge would give', async () => {
    const socket = new PassThrough();
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    const ended = new Promise((resolve) => socket.on('end', resolve));
    rejectUpgrade(socket, new ActorDestroyed(actorId));
    await ended;
    const [head, body] = Buffer.concat(chunks).toString().split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 410 Gone\r\n/);
    expect(head).toContain(`Content-Length: ${Buffer.byteLength(body!)}`);
    expect(JSON.parse(body!)).toEqual({
      error: { code: 'actor_destroyed', message: `actor ${actorId} was destroyed` },
    });
  });
});

describe('broken invariants in activities', () => {
  it('reach Temporal as a failure type the workflows never retry', () => {
    const failure = ensureApplicationFailure(new InvariantViolation('contradiction'));
    expect(failure.type).toBe('InvariantViolation');
    expect(NON_RETRYABLE_ERROR_TYPES).toContain(failure.type);
  });

  /** A pool whose allocation statement finds the actor row `row` (or none) and chooses no runner. */
  function registry(row: { generation: number; runner_id: string | null } | undefined): Db {
    const result = row ? [{ ...row, destroyed: false, chosen: null }] : [];
    return { query: async () => ({ rows: result, rowCount: result.length }) } as unknown as Db;
  }

  it('are what allocation throws when the registry contradicts the workflow', async () => {
    const gone = allocateActor(registry(undefined), { actorId, generation: 1, runnerLostMs: 1000 });
    await expect(gone).rejects.toThrow(InvariantViolation);
    const ahead = allocateActor(registry({ generation: 3, runner_id: null }), {
      actorId,
      generation: 2,
      runnerLostMs: 1000,
    });
    await expect(ahead).rejects.toThrow(
      new InvariantViolation(`actor ${actorId} is at generation 3, cannot allocate 2`),
    );
  });
});
