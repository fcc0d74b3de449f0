/**
 * `ANY /actors/:actorId/http/*`: tunnels a request to the actor's request handler on its runner.
 * A sleeping actor is woken and waited for (bounded by the wake timeout); a runner that answers
 * "not hosted" (the actor stopped meanwhile) makes the gateway wait for the next generation.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Client } from '@temporalio/client';
import type { Config } from '../config.js';
import { signalActor } from '../temporal-client.js';
import { wakeSignal } from '../workflows/actor-api.js';
import type { ActorWatch } from './actor-watch.js';
import { HttpError } from './errors.js';
import { parseActorId } from './management-api.js';
import { NotHostedError, type TunnelledResponse } from './runner-connection.js';
import type { RunnerEndpoint } from './runner-endpoint.js';

export interface TunnelDeps {
  client: Client;
  config: Config;
  watch: ActorWatch;
  runners: RunnerEndpoint;
  /** Told of every wake a request asks for (metrics). */
  onWake: (actorId: string) => void;
}

// Connection-level headers belong to one hop; they are not forwarded either way.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'content-length']);

export function registerHttpTunnel(app: FastifyInstance, deps: TunnelDeps): void {
  // Tunnelled bodies are opaque bytes, whatever their content type.
  app.register(async (tunnel) => {
    tunnel.removeAllContentTypeParsers();
    tunnel.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: deps.config.gateway.maxBodyBytes }, (_req, body, done) =>
      done(null, body),
    );
    const handler = (request: FastifyRequest, reply: FastifyReply) => tunnelRequest(request, reply, deps);
    tunnel.all('/actors/:actorId/http', handler);
    tunnel.all('/actors/:actorId/http/*', handler);
  });
}

async function tunnelRequest(request: FastifyRequest, reply: FastifyReply, deps: TunnelDeps): Promise<FastifyReply> {
  const actorId = parseActorId({ actorId: (request.params as { actorId: string }).actorId });
  const path = actorPath(request.url, actorId);
  const deadline = Date.now() + deps.config.timing.wakeTimeoutMs;
  const wake = async () => {
    deps.onWake(actorId);
    await signalActor(deps.client, actorId, wakeSignal);
  };
  let staleGeneration: number | undefined;

  for (;;) {
    const actor = await deps.watch.waitUntilRunning(actorId, { deadline, wake, ...(staleGeneration === undefined ? {} : { staleGeneration }) });
    const runner = deps.runners.get(actor.runnerId);
    if (!runner) throw new HttpError(503, 'runner_unreachable', `actor ${actorId} runs on a runner not connected to this gateway`);
    try {
      const response = await runner.httpRequest(
        {
          actorId,
          generation: actor.generation,
          method: request.method,
          path,
          headers: forwardableHeaders(request.headers),
          body: Buffer.isBuffer(request.body) && request.body.length > 0 ? request.body : null,
        },
        deps.config.gateway.requestTimeoutMs,
      );
      return send(reply, response);
    } catch (err) {
      if (err instanceof NotHostedError) {
        request.log.debug({ actorId, generation: actor.generation }, 'actor not hosted any more; waiting for the next generation');
        staleGeneration = actor.generation;
        continue;
      }
      throw new HttpError(504, 'actor_timeout', err instanceof Error ? err.message : String(err));
    }
  }
}

/** The part of the URL after `/actors/:id/http`, query string included; always starts with `/`. */
function actorPath(url: string, actorId: string): string {
  const rest = url.slice(`/actors/${actorId}/http`.length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

function forwardableHeaders(headers: FastifyRequest['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function send(reply: FastifyReply, response: TunnelledResponse): FastifyReply {
  for (const [name, value] of Object.entries(response.headers)) {
    if (!HOP_BY_HOP.has(name.toLowerCase())) void reply.header(name, value);
  }
  return reply.status(response.status).send(response.body ?? '');
}
