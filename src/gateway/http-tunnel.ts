/**
 * `ANY /actors/:actorId/http/*`: tunnels a request to the actor's request handler on its runner,
 * through the tunnel's one route to a running actor (a sleeping actor is woken and waited for,
 * bounded by the wake timeout). What fails leaves as a catalog error through the error handler.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import type { TunnelledResponse } from './http-exchanges.js';
import { parseActorId } from './management-api.js';
import type { Tunnel } from './tunnel.js';

export interface HttpTunnelDeps {
  config: Config;
  tunnel: Pick<Tunnel, 'request'>;
}

// Connection-level headers belong to one hop; they are not forwarded either way.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'content-length',
]);

export function registerHttpTunnel(app: FastifyInstance, deps: HttpTunnelDeps): void {
  // Tunnelled bodies are opaque bytes, whatever their content type.
  app.register(async (tunnel) => {
    tunnel.removeAllContentTypeParsers();
    tunnel.addContentTypeParser(
      '*',
      { parseAs: 'buffer', bodyLimit: deps.config.gateway.maxBodyBytes },
      (_req, body, done) => done(null, body),
    );
    const handler = (request: FastifyRequest, reply: FastifyReply) => tunnelRequest(request, reply, deps);
    tunnel.all('/actors/:actorId/http', handler);
    tunnel.all('/actors/:actorId/http/*', handler);
  });
}

async function tunnelRequest(
  request: FastifyRequest,
  reply: FastifyReply,
  deps: HttpTunnelDeps,
): Promise<FastifyReply> {
  const actorId = parseActorId({ actorId: (request.params as { actorId: string }).actorId });
  const response = await deps.tunnel.request(actorId, {
    method: request.method,
    path: actorPath(request.url, actorId),
    headers: forwardableHeaders(request.headers),
    body: Buffer.isBuffer(request.body) && request.body.length > 0 ? request.body : null,
  });
  return send(reply, response);
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
