/**
 * The Durable Object chat room the benchmarks compare Dormouse with (bench/workerd/, issue 11)
 * does what our `chat` actor does, on a real `workerd` process: a message is broadcast to every
 * socket of the room with the next `seq`, and `GET /state` counts messages and sockets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { closeSockets, openSocket, startWorkerd, type ChatReply, type Workerd } from '../bench/workerd.js';
import { wsText } from '../src/util/ws-data.js';
import { waitFor } from './harness/wait.js';

let workerd: Workerd;
const sockets: WebSocket[] = [];

beforeAll(async () => {
  workerd = await startWorkerd();
});
afterAll(async () => {
  await closeSockets(sockets);
  await workerd?.stop();
});

/** Opens a socket of `room` as `name` and records what it hears. */
async function join(room: string, name: string): Promise<{ ws: WebSocket; received: ChatReply[] }> {
  const ws = await openSocket(`${workerd.url}/rooms/${room}/ws?name=${name}`);
  sockets.push(ws);
  const received: ChatReply[] = [];
  ws.on('message', (data) => received.push(JSON.parse(wsText(data)) as ChatReply));
  return { ws, received };
}

describe('the workerd chat room', () => {
  it('broadcasts a message to every socket of the room with seq 1, and counts it in /state', async () => {
    const ann = await join('lobby', 'ann');
    const bob = await join('lobby', 'bob');

    ann.ws.send('hello');
    const expected = { seq: 1, from: 'ann', text: 'hello' };
    for (const client of [ann, bob]) {
      await waitFor(() => client.received.length >= 1, { timeoutMs: 10_000, message: 'the broadcast' });
      expect(client.received).toEqual([expected]);
    }

    const response = await fetch(`${workerd.url}/rooms/lobby/state`, { signal: AbortSignal.timeout(10_000) });
    expect(await response.json()).toEqual({ seq: 1, connections: 2 });
  });

  it('keeps rooms apart', async () => {
    const response = await fetch(`${workerd.url}/rooms/elsewhere/state`, { signal: AbortSignal.timeout(10_000) });
    expect(await response.json()).toEqual({ seq: 0, connections: 0 });
  });
});
