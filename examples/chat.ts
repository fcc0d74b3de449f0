/**
 * The demo actor `chat` (DESIGN §6). Over HTTP: `GET /state` answers
 * `{seq, connections, generation}` and `POST /messages` takes `{from?, text}` like a WebSocket
 * message would. `seq` counts the messages processed and is persisted with them.
 */
import { defineActor } from '../src/runner/index.js';

export interface ChatState {
  seq: number;
  messages: { seq: number; from: string; text: string }[];
}

export interface ChatInput {
  sleepAfterMs?: number;
}

/** Messages kept in the state; older ones fall off. */
const HISTORY = 100;

export const chat = defineActor<ChatState, ChatInput | null>({
  name: 'chat',
  createState: () => ({ seq: 0, messages: [] }),
  async onRequest(ctx, request) {
    const { pathname } = new URL(request.url);
    if (request.method === 'GET' && pathname === '/state') {
      return Response.json({ seq: ctx.state.seq, connections: 0, generation: ctx.generation });
    }
    if (request.method === 'GET' && pathname === '/messages') {
      return Response.json({ messages: ctx.state.messages });
    }
    if (request.method === 'POST' && pathname === '/messages') {
      const body = (await request.json().catch(() => null)) as { from?: unknown; text?: unknown } | null;
      if (!body || typeof body.text !== 'string') return Response.json({ error: 'body must be {from?, text}' }, { status: 400 });
      const from = typeof body.from === 'string' ? body.from : 'http';
      const message = { seq: ctx.state.seq + 1, from, text: body.text };
      ctx.state.seq = message.seq;
      ctx.state.messages = [...ctx.state.messages, message].slice(-HISTORY);
      return Response.json(message, { status: 201 });
    }
    return Response.json({ error: `no route ${request.method} ${pathname}` }, { status: 404 });
  },
});
