/**
 * The management API of DESIGN §6: create, get-or-create, read, list, destroy, sleep, wake and
 * reschedule actors. Bodies and queries are validated strictly: unknown or mistyped fields are a
 * 400 and change nothing.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Config } from '../config.js';
import {
  ActorDestroyed,
  ActorExists,
  ActorNotFound,
  BadRequest,
  TemporalUnavailable,
  Unauthorized,
} from '../errors.js';
import { getActor, getOrCreateActor, insertActor, listActors, type Actor } from '../db/actors.js';
import type { Db } from '../db/pool.js';
import { RUNNER_DEFAULTS, actorName } from '../protocol/runner-protocol.js';
import { signalActor, startActorWorkflow } from '../temporal-client.js';
import { CRASH_POLICIES, destroySignal, rescheduleSignal, sleepSignal, wakeSignal } from '../workflows/actor-api.js';
import { bearerToken, sameToken } from './auth.js';
import { zodMessage } from './errors.js';

export interface ManagementDeps {
  db: Db;
  client: Client;
  config: Config;
}

const name = actorName;
const key = z.string().min(1).max(512);
const crashPolicy = z.enum(CRASH_POLICIES);
/** The same rule as a runner's pool in its hello. */
const pool = z.string().min(1).max(200);

const createBody = z.strictObject({
  name,
  key: key.nullable().optional(),
  input: z.unknown().optional(),
  crashPolicy: crashPolicy.optional(),
  pool: pool.optional(),
});
const getOrCreateBody = z.strictObject({
  name,
  key,
  input: z.unknown().optional(),
  crashPolicy: crashPolicy.optional(),
  pool: pool.optional(),
});
const listQuery = z.strictObject({
  name: name.optional(),
  key: key.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});
const actorParams = z.strictObject({ actorId: z.uuid('actorId must be a UUID') });

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value ?? {});
  if (!result.success) throw new BadRequest(`invalid ${what}: ${zodMessage(result.error)}`);
  return result.data;
}

export function parseActorId(params: unknown): string {
  return parse(actorParams, params, 'path').actorId;
}

const SIGNALS = { sleep: sleepSignal, wake: wakeSignal, reschedule: rescheduleSignal } as const;

/**
 * The routes live in a plugin of their own so that the admin-token check applies to them only:
 * tunnelled requests to actors are the actors' business (their headers are forwarded).
 */
export function registerManagementApi(app: FastifyInstance, deps: ManagementDeps): void {
  void app.register(async (api) => {
    const { adminToken } = deps.config.auth;
    if (adminToken) {
      api.addHook('onRequest', async (request) => {
        if (!sameToken(bearerToken(request.headers), adminToken)) {
          request.log.warn({ url: request.url }, 'management request refused: no valid admin token');
          throw new Unauthorized('the admin token is required (Authorization: Bearer <token>)');
        }
      });
    }
    managementRoutes(api, deps);
  });
}

function managementRoutes(app: FastifyInstance, { db, client, config }: ManagementDeps): void {
  /** Starts the workflow of a new actor; the row stays if Temporal is down, and the reaper repairs it. */
  async function launch(actor: Actor): Promise<void> {
    try {
      await startActorWorkflow(client, config, actor);
    } catch (err) {
      app.log.error({ err, actorId: actor.actorId }, 'starting the actor workflow failed');
      throw new TemporalUnavailable('actor registered but its workflow could not be started yet; it will be');
    }
  }

  app.post('/actors', async (request, reply) => {
    const body = parse(createBody, request.body, 'body');
    const actor = await insertActor(db, {
      actorId: randomUUID(),
      name: body.name,
      key: body.key ?? null,
      pool: body.pool ?? RUNNER_DEFAULTS.pool,
      input: body.input ?? null,
      crashPolicy: body.crashPolicy ?? 'restart',
    });
    if (!actor) throw new ActorExists(`an actor ${body.name} with key ${JSON.stringify(body.key)} exists`);
    await launch(actor);
    request.log.info({ actorId: actor.actorId, name: actor.name, key: actor.key, pool: actor.pool }, 'actor created');
    return reply.status(201).send({ actor });
  });

  app.put('/actors', async (request, reply) => {
    const body = parse(getOrCreateBody, request.body, 'body');
    const { actor, created } = await getOrCreateActor(db, {
      actorId: randomUUID(),
      name: body.name,
      key: body.key,
      pool: body.pool ?? RUNNER_DEFAULTS.pool,
      input: body.input ?? null,
      crashPolicy: body.crashPolicy ?? 'restart',
    });
    // An existing actor keeps its input; but placing it in another pool than the one asked for
    // would run it where the caller did not mean it to.
    if (!created && body.pool !== undefined && actor.pool !== body.pool)
      throw new ActorExists(`an actor ${body.name} with key ${JSON.stringify(body.key)} exists in pool ${actor.pool}`);
    // An existing actor that never ran may have lost its workflow start to a crash: starting
    // is idempotent, so make sure.
    if (created || actor.generation === 0) await launch(actor);
    if (created)
      request.log.info({ actorId: actor.actorId, name: actor.name, key: actor.key, pool: actor.pool }, 'actor created');
    return reply.status(created ? 201 : 200).send({ actor });
  });

  app.get('/actors', async (request) => {
    const query = parse(listQuery, request.query, 'query');
    return { actors: await listActors(db, query) };
  });

  app.get('/actors/:actorId', async (request) => {
    return { actor: await mustGet(db, parseActorId(request.params)) };
  });

  app.delete('/actors/:actorId', async (request, reply) => {
    const actor = await mustGet(db, parseActorId(request.params));
    if (actor.state !== 'destroyed') await signalActor(client, actor.actorId, destroySignal);
    request.log.info({ actorId: actor.actorId }, 'actor destroy requested');
    return reply.status(202).send({ actor });
  });

  for (const [action, signal] of Object.entries(SIGNALS)) {
    app.post(`/actors/:actorId/${action}`, async (request, reply) => {
      const actorId = parseActorId(request.params);
      if (!isEmptyBody(request.body)) throw new BadRequest(`${action} takes no body`);
      const actor = await mustGet(db, actorId);
      if (actor.state === 'destroyed') throw new ActorDestroyed(actorId);
      await signalActor(client, actorId, signal);
      request.log.info({ actorId, action }, 'actor signalled');
      return reply.status(202).send({ actor });
    });
  }
}

function isEmptyBody(body: unknown): boolean {
  return body === undefined || body === null || (typeof body === 'object' && Object.keys(body).length === 0);
}

async function mustGet(db: Db, actorId: string): Promise<Actor> {
  const actor = await getActor(db, actorId);
  if (!actor) throw new ActorNotFound(actorId);
  return actor;
}
