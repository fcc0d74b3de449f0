/**
 * A terminal client for the `chat` demo: joins a room (an actor keyed by the room name), prints
 * what everyone says, and sends each line you type. Leave it idle: the room sleeps, your socket
 * stays open, and the next line wakes it.
 *
 *   npx tsx examples/chat-client.ts --room lobby --name ann [--gateway http://127.0.0.1:6420]
 */
import { createInterface } from 'node:readline';
import { Command } from 'commander';
import WebSocket from 'ws';
import { ClientCloseCode } from '../src/protocol/client-close-codes.js';
import { wsText } from '../src/util/ws-data.js';

/** Close codes after which reconnecting makes sense. */
const RECONNECT_ON = new Set<number>([
  1006,
  ClientCloseCode.GoingAway,
  ClientCloseCode.ServiceRestart,
  ClientCloseCode.ActorStopped,
  ClientCloseCode.UnknownConnection,
  ClientCloseCode.ActorUnavailable,
]);

const program = new Command()
  .requiredOption('--room <name>', 'the room (actor key) to join')
  .option('--name <name>', 'how others see you', process.env.USER ?? 'guest')
  .option('--gateway <url>', 'the Dormouse gateway', 'http://127.0.0.1:6420')
  .parse();
const options = program.opts<{ room: string; name: string; gateway: string }>();

async function joinRoom(): Promise<string> {
  const response = await fetch(`${options.gateway}/actors`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'chat', key: options.room }),
  });
  const body = (await response.json()) as { actor?: { actorId: string }; error?: { message: string } };
  if (!body.actor) throw new Error(`could not join ${options.room}: ${body.error?.message ?? response.status}`);
  return body.actor.actorId;
}

function connect(actorId: string): void {
  const url = `${options.gateway.replace(/^http/, 'ws')}/actors/${actorId}/ws?name=${encodeURIComponent(options.name)}`;
  const ws = new WebSocket(url);
  const input = createInterface({ input: process.stdin });
  ws.on('open', () => console.error(`joined ${options.room} as ${options.name}; type to talk, Ctrl-D to leave`));
  ws.on('message', (data) => {
    const { seq, from, text } = JSON.parse(wsText(data)) as { seq: number; from: string; text: string };
    console.log(`#${seq} ${from}: ${text}`);
  });
  // Lines typed (or piped) before the socket opens wait for it instead of being lost.
  const early: string[] = [];
  ws.on('open', () => early.splice(0).forEach((line) => ws.send(line)));
  input.on('line', (line) => {
    if (!line.trim()) return;
    if (ws.readyState === WebSocket.OPEN) ws.send(line);
    else early.push(line);
  });
  input.on('close', () => ws.close(1000, 'bye'));
  ws.on('close', (code, reason) => {
    input.close();
    if (!RECONNECT_ON.has(code)) {
      console.error(`left ${options.room} (${code}${reason.length ? ` ${reason.toString()}` : ''})`);
      process.exit(code === 1000 ? 0 : 1);
    }
    console.error(`disconnected (${code}); reconnecting`);
    setTimeout(() => connect(actorId), 1000);
  });
  ws.on('error', (err) => console.error(`socket error: ${err.message}`));
}

joinRoom().then(connect, (err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
