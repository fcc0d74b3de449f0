/**
 * The demo actor `chat` (DESIGN §6). Every WebSocket text message `m` is broadcast to all of the
 * actor's connections as JSON `{seq, from, text}`; `seq` counts the messages processed and is
 * persisted with them. Connections are hibernatable: they stay open while the room rests (its
 * instance dropped after 10 s idle, rebuilt on its runner by the next message) and while it
 * sleeps (its generation stopped after 5 min idle, started again by the next message).
 *
 * HTTP: `GET /state` answers `{seq, connections, generation}`; `GET /messages` the recent
 * history; `POST /messages` takes `{from?, text}` like a WebSocket message would.
 * Connect with `?name=ann` to be `ann` in the room.
 */
import { defineActor, type ActorContext, type Connection } from '../src/runner/index.js';

export interface ChatMessage {
  seq: number;
  from: string;
  text: string;
}

export interface ChatState {
  seq: number;
  messages: ChatMessage[];
}

/** Idle times (DESIGN §4.1): resting after `restAfterMs` (10 s), sleeping after `sleepAfterMs` (5 min). */
export interface ChatInput {
  restAfterMs?: number;
  sleepAfterMs?: number;
}

/** Messages kept in the state; older ones fall off. */
const HISTORY = 100;

type Ctx = ActorContext<ChatState, ChatInput | null>;

function post(ctx: Ctx, from: string, text: string): ChatMessage {
  const message = { seq: ctx.state.seq + 1, from, text };
  ctx.state.seq = message.seq;
  ctx.state.messages = [...ctx.state.messages, message].slice(-HISTORY);
  ctx.broadcast(JSON.stringify(message));
  return message;
}

function nameOf(conn: Connection): string {
  const attachment = conn.attachment as { name?: string } | null;
  return attachment?.name ?? conn.id.slice(0, 8);
}

export const chat = defineActor<ChatState, ChatInput | null>({
  name: 'chat',
  createState: () => ({ seq: 0, messages: [] }),
  hibernatable: true,
  async onConnect(_ctx, conn) {
    const name = new URL(`http://actor${conn.path}`).searchParams.get('name');
    if (name) await conn.setAttachment({ name: name.slice(0, 64) });
  },
  onMessage(ctx, conn, message) {
    post(ctx, nameOf(conn), message.toString());
  },
  async onRequest(ctx, request) {
    const { pathname } = new URL(request.url);
    if (request.method === 'GET' && pathname === '/state') {
      return Response.json({ seq: ctx.state.seq, connections: ctx.connections().length, generation: ctx.generation });
    }
    if (request.method === 'GET' && pathname === '/messages') {
      return Response.json({ messages: ctx.state.messages });
    }
    if (request.method === 'POST' && pathname === '/messages') {
      const body = (await request.json().catch(() => null)) as { from?: unknown; text?: unknown } | null;
      if (!body || typeof body.text !== 'string')
        return Response.json({ error: 'body must be {from?, text}' }, { status: 400 });
      return Response.json(post(ctx, typeof body.from === 'string' ? body.from : 'http', body.text), { status: 201 });
    }
    return Response.json({ error: `no route ${request.method} ${pathname}` }, { status: 404 });
  },
});
