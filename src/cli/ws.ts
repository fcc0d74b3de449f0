/**
 * `dormouse ws <actorId> [path]`: an interactive WebSocket to an actor through the gateway
 * (`/actors/:actorId/ws<path>`). Each line of stdin goes out as a text message; each text message
 * received is printed on stdout, one per line, so that the output pipes; everything else
 * (connected, binary messages, the close code) goes to stderr. The end of stdin (Ctrl-D) closes
 * with 1000. Exits 0 when the socket closed normally (1000, 1001), 1 otherwise.
 */
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import WebSocket from 'ws';
import { loadConfig } from '../config.js';
import { ClientCloseCode } from '../protocol/client-close-codes.js';
import {
  gatewayOption,
  gatewayTarget,
  httpErrorMessage,
  unreachableMessage,
  type GatewayOptions,
} from './gateway-client.js';
import { wsText } from '../util/ws-data.js';

/** The upgrade waits only for the gateway's registry lookup, not for the actor to wake. */
const HANDSHAKE_TIMEOUT_MS = 30_000;

/** The standard codes a client sees besides Dormouse's own (ClientCloseCode). */
const STANDARD_CLOSE_CODES: Record<number, string> = {
  1000: 'Normal',
  1005: 'NoStatus',
  1006: 'Abnormal',
  1008: 'PolicyViolation',
  1009: 'MessageTooBig',
};
const CLOSE_CODE_NAMES = new Map<number, string>([
  ...Object.entries(STANDARD_CLOSE_CODES).map(([code, name]): [number, string] => [Number(code), name]),
  ...Object.entries(ClientCloseCode).map(([name, code]): [number, string] => [code, name]),
]);
const NORMAL_CLOSES: ReadonlySet<number> = new Set([1000, ClientCloseCode.GoingAway]);

interface Closed {
  code: number;
  reason: string;
}

export function registerWsCommand(program: Command): void {
  program
    .command('ws <actorId> [path]')
    .description('open a WebSocket to an actor: send each line of stdin, print each message received; Ctrl-D closes')
    .addOption(gatewayOption())
    .action(async (actorId: string, path: string | undefined, options: GatewayOptions) => {
      const { url } = gatewayTarget(options, loadConfig());
      process.exitCode = await talk(url, socketUrl(url, actorId, path));
    });
}

/** `path` may start with `/` or `?`; anything else is taken as a path below `/ws/`. */
function socketUrl(gatewayUrl: string, actorId: string, path: string | undefined): string {
  const suffix = path === undefined || /^[/?]/.test(path) ? (path ?? '') : `/${path}`;
  return `${gatewayUrl.replace(/^http/, 'ws')}/actors/${encodeURIComponent(actorId)}/ws${suffix}`;
}

/** Connects, relays stdin and messages until the socket closes; resolves with the exit code. */
async function talk(gatewayUrl: string, url: string): Promise<number> {
  // Deliberately without the admin token: the gateway forwards a socket's headers to the actor.
  const ws = new WebSocket(url, { handshakeTimeout: HANDSHAKE_TIMEOUT_MS });
  const closed = new Promise<Closed>((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  ws.on('message', (data, isBinary) => {
    if (isBinary) process.stderr.write(`(a binary message of ${rawLength(data)} bytes)\n`);
    else process.stdout.write(`${wsText(data)}\n`);
  });
  await opened(ws, gatewayUrl);
  process.stderr.write(`connected to ${url}; each line is sent as a message, Ctrl-D closes\n`);

  const input = createInterface({ input: process.stdin, crlfDelay: Infinity });
  const endOfInput = (): void => ws.close(1000);
  input.on('line', (line) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(line);
  });
  input.once('close', endOfInput);

  const { code, reason } = await closed;
  input.off('close', endOfInput);
  input.close();
  process.stderr.write(`closed ${code} (${CLOSE_CODE_NAMES.get(code) ?? 'unknown'})${reason ? `: ${reason}` : ''}\n`);
  return NORMAL_CLOSES.has(code) ? 0 : 1;
}

/**
 * Resolves once the socket is open; rejects with the gateway's JSON error when it refuses the
 * upgrade (unknown actor, bad id), or with why it could not be reached.
 */
function opened(ws: WebSocket, gatewayUrl: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let open = false;
    ws.once('open', () => {
      open = true;
      resolve();
    });
    ws.once('unexpected-response', (_request, response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.once('end', () => reject(new Error(httpErrorMessage(response.statusCode ?? 0, body))));
    });
    // Once open, an error is followed by 'close', which reports the outcome.
    ws.on('error', (err) => {
      if (open) process.stderr.write(`socket error: ${err.message}\n`);
      else reject(new Error(unreachableMessage(gatewayUrl, err)));
    });
  });
}

function rawLength(data: WebSocket.RawData): number {
  return Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
}
