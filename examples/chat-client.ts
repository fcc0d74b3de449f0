/**
 * A terminal client for the `chat` demo: joins a room (an actor keyed by the room name), prints
 * what everyone says, and sends each line you type. Leave it idle: after 10 s the room rests in
 * place (its runner drops it, keeping your connection), after 5 minutes it sleeps (its generation
 * stops); your socket stays open either way, and the next line wakes it (a rest in milliseconds,
 * a sleep through its workflow). Its socket is a resumable session (src/client/): give
 * it several gateways, kill the one it is on, and it resumes on another without losing a line.
 *
 *   npx tsx examples/chat-client.ts --room lobby --name ann \
 *     [--gateway http://127.0.0.1:6420 --gateway http://127.0.0.1:6421 | --gateway URL,URL]
 */
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import { ClientCloseCode, ResumableSocket } from '../src/client/index.js';

/** Closes after which a new session makes sense: the old one is gone, the room is still there. */
const REJOIN_ON = new Set<number>([
  ClientCloseCode.SessionInvalid,
  ClientCloseCode.SessionExpired,
  ClientCloseCode.ActorStopped,
  ClientCloseCode.UnknownConnection,
  ClientCloseCode.ActorUnavailable,
]);

const program = new Command()
  .requiredOption('--room <name>', 'the room (actor key) to join')
  .option('--name <name>', 'how others see you', process.env.USER ?? 'guest')
  .option(
    '--gateway <urls>',
    'a Dormouse gateway (repeat it, or separate URLs with commas; default http://127.0.0.1:6420)',
    (value: string, previous: string[] | undefined) => [...(previous ?? []), ...value.split(',').filter(Boolean)],
  )
  .parse();
const options = program.opts<{ room: string; name: string; gateway?: string[] }>();
const gateways = options.gateway ?? ['http://127.0.0.1:6420'];

/** Get-or-create the room on the first gateway that answers. */
async function joinRoom(): Promise<string> {
  let failure: unknown;
  for (const gateway of gateways) {
    try {
      const response = await fetch(`${gateway}/actors`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'chat', key: options.room }),
      });
      const body = (await response.json()) as { actor?: { actorId: string }; error?: { message: string } };
      if (body.actor) return body.actor.actorId;
      failure = body.error?.message ?? response.status;
    } catch (err) {
      failure = err instanceof Error ? err.message : err;
    }
  }
  throw new Error(`could not join ${options.room} (last tried ${gateways.at(-1)}): ${String(failure)}`);
}

const input = createInterface({ input: process.stdin });
let socket: ResumableSocket | null = null;
// Lines typed (or piped) while no session is open wait for one instead of being lost.
const early: string[] = [];
input.on('line', (line) => {
  if (!line.trim()) return;
  if (socket) socket.send(line);
  else early.push(line);
});
let leaving = false;
input.on('close', () => void leave());

/** Ctrl-D (or the end of piped input): leave once the gateway holds the last lines (5 s at most). */
async function leave(): Promise<void> {
  leaving = true;
  const current = socket;
  if (!current) return; // connect() leaves once the session is open
  for (const deadline = Date.now() + 5_000; current.pending > 0 && Date.now() < deadline;) await sleep(50);
  await current.close('bye');
}

async function connect(actorId: string): Promise<void> {
  const session = await ResumableSocket.open({ gateways, actorId, path: `?name=${encodeURIComponent(options.name)}` });
  console.error(`joined ${options.room} as ${options.name} on ${session.gatewayUrl}; type to talk, Ctrl-D to leave`);
  session.on('message', (data) => {
    const { seq, from, text } = JSON.parse(data.toString()) as { seq: number; from: string; text: string };
    console.log(`#${seq} ${from}: ${text}`);
  });
  session.on('resumed', (gateway) => console.error(`connection lost; resumed on ${gateway}`));
  session.on('close', (code, reason) => {
    socket = null;
    if (REJOIN_ON.has(code) && !leaving) {
      console.error(`session ended (${code} ${reason}); rejoining`);
      setTimeout(() => void connect(actorId).catch(fail), 1000);
      return;
    }
    console.error(`left ${options.room} (${code}${reason ? ` ${reason}` : ''})`);
    process.exit(code === 1000 ? 0 : 1);
  });
  socket = session;
  early.splice(0).forEach((line) => session.send(line));
  if (leaving) await leave();
}

function fail(err: unknown): never {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
}

joinRoom().then(connect).catch(fail);
