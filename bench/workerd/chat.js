/**
 * The Durable Object side of the workerd comparison (issue 11): a chat room that does what our
 * demo actor `chat` does (examples/chat.ts), on the WebSocket Hibernation API. Run by
 * bench/workerd.ts with config.capnp beside this file.
 *
 * - `GET /rooms/<name>/ws` (upgrade; `?name=ann` to be `ann`): a hibernatable socket of the room.
 *   Every message `m` is broadcast to all of the room's sockets as JSON `{seq, from, text}`; `seq`
 *   is in the object's storage, and the output gate holds the broadcast until it is written.
 * - `GET /rooms/<name>/state`: `{seq, connections}`.
 * - `GET /rooms/<name>/constructed`: `{constructed}`, how many times this workerd process has
 *   built the room's object; answered by the Worker without touching the object (a wake would
 *   rebuild it), so a benchmark can tell a real wake (the count went up) from a warm object.
 * - `GET /plain/state` and `GET /plain/ws`: the same answers from the Worker alone (no object,
 *   no storage; the socket is not hibernatable): the bare-Worker baselines.
 * - `GET /health`: `{ok: true}`, for readiness.
 */
/* global WebSocketPair -- workerd's, not Node's */
import { DurableObject } from 'cloudflare:workers';

/**
 * Constructions per object id, in this isolate. A Durable Object and its Worker share the isolate
 * in workerd, and evicting an idle object drops its instance but not the module, so the count
 * survives hibernation (and is lost with the process, which is fine for a benchmark).
 */
const constructions = new Map();

export class ChatRoom extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    const id = ctx.id.toString();
    constructions.set(id, (constructions.get(id) ?? 0) + 1);
    // What our actors do on every start: load the persisted state before handling anything.
    this.seq = 0;
    ctx.blockConcurrencyWhile(async () => {
      this.seq = (await ctx.storage.get('seq')) ?? 0;
    });
  }

  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === '/ws') {
      if (request.headers.get('Upgrade') !== 'websocket')
        return Response.json({ error: 'expected a WebSocket upgrade' }, { status: 426 });
      const [client, server] = Object.values(new WebSocketPair());
      this.ctx.acceptWebSocket(server);
      const name = url.searchParams.get('name');
      server.serializeAttachment({ name: name ? name.slice(0, 64) : crypto.randomUUID().slice(0, 8) });
      return new Response(null, { status: 101, webSocket: client });
    }
    if (request.method === 'GET' && url.pathname === '/state') {
      return Response.json({ seq: this.seq, connections: this.ctx.getWebSockets().length });
    }
    return Response.json({ error: `no route ${request.method} ${url.pathname}` }, { status: 404 });
  }

  async webSocketMessage(ws, message) {
    const text = typeof message === 'string' ? message : new TextDecoder().decode(message);
    const seq = this.seq + 1;
    this.seq = seq;
    // Not awaited, as is idiomatic: the output gate holds the sends below until the write is durable.
    this.ctx.storage.put('seq', seq);
    const from = ws.deserializeAttachment()?.name ?? 'anonymous';
    const out = JSON.stringify({ seq, from, text });
    for (const socket of this.ctx.getWebSockets()) {
      try {
        socket.send(out);
      } catch {
        // A socket that is closing: it leaves the room.
      }
    }
  }

  webSocketClose(ws, code, reason) {
    closeBack(ws, code, reason);
  }
}

/**
 * Completes the close handshake a client began. 1005 (the client sent no code) and 1006 cannot be
 * sent back: 1000 instead, or the client would wait for an answer that never comes.
 */
function closeBack(ws, code, reason) {
  try {
    ws.close(code === 1005 || code === 1006 ? 1000 : code, reason);
  } catch {
    // Closed already (workerd may have answered the close itself).
  }
}

/** The bare Worker's socket: the same reply shape, from memory, no object, no storage. */
function plainSocket(url) {
  const [client, server] = Object.values(new WebSocketPair());
  server.accept();
  const from = url.searchParams.get('name') ?? 'anonymous';
  let seq = 0;
  server.addEventListener('message', (event) => {
    const text = typeof event.data === 'string' ? event.data : new TextDecoder().decode(event.data);
    seq += 1;
    server.send(JSON.stringify({ seq, from, text }));
  });
  server.addEventListener('close', (event) => closeBack(server, event.code, event.reason));
  return new Response(null, { status: 101, webSocket: client });
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === '/health') return Response.json({ ok: true });
    if (url.pathname === '/plain/state') return Response.json({ seq: 0, connections: 0 });
    if (url.pathname === '/plain/ws') {
      if (request.headers.get('Upgrade') !== 'websocket')
        return Response.json({ error: 'expected a WebSocket upgrade' }, { status: 426 });
      return plainSocket(url);
    }
    const match = /^\/rooms\/([^/]+)\/(ws|state|constructed)$/.exec(url.pathname);
    if (!match) return Response.json({ error: `no route ${request.method} ${url.pathname}` }, { status: 404 });
    const [, name, route] = match;
    const id = env.ROOMS.idFromName(decodeURIComponent(name));
    if (route === 'constructed') return Response.json({ constructed: constructions.get(id.toString()) ?? 0 });
    const inner = new URL(request.url);
    inner.pathname = `/${route}`;
    return env.ROOMS.get(id).fetch(new Request(inner, request));
  },
};
