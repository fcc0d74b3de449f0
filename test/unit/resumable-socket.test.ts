/**
 * The client SDK's resumable socket against fake gateways speaking `dormouse.v1`: real sockets on
 * loopback, one fake actor shared by every fake gateway (as a fleet shares the real one).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { once, type EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { ResumableSocket, SessionClosedError, type ResumableSocketOptions } from '../../src/client/index.js';
import { ClientCloseCode } from '../../src/protocol/client-close-codes.js';
import {
  SESSION_SUBPROTOCOL,
  parseClientSessionFrame,
  type ClientSessionFrame,
  type GatewaySessionFrame,
} from '../../src/protocol/session-protocol.js';
import { wsText } from '../../src/util/ws-data.js';
import { within } from '../../dev/wait.js';
import { waitFor } from '../harness/wait.js';

const WAIT_MS = 5_000;

/** The actor behind the fake gateways: its session, the client messages it made durable, its outbox. */
class FakeActor {
  readonly actorId = randomUUID();
  readonly token = `${randomUUID()}.${randomBytes(24).toString('base64url')}`;
  /** The client messages made durable, in order. */
  readonly received: { index: number; data: string; binary: boolean }[] = [];
  /** Frames the client has not acknowledged. */
  outbox: { seq: number; data: string; binary: boolean }[] = [];
  private lastSeq = 0;
  /** The socket holding the session, on whichever gateway. */
  holder: WebSocket | null = null;
  /** Resumes are refused with SessionExpired. */
  expired = false;

  get lastIndex(): number {
    return this.received.at(-1)?.index ?? 0;
  }

  /** Sends a frame to the client; `deliver: false` keeps it in the outbox only (as if its gateway lost it). */
  broadcast(data: string, { binary = false, deliver = true } = {}): void {
    const frame = { seq: ++this.lastSeq, data, binary };
    this.outbox.push(frame);
    if (deliver) send(this.holder, { t: 'msg', ...frame });
  }

  acknowledged(seq: number): void {
    this.outbox = this.outbox.filter((frame) => frame.seq > seq);
  }
}

interface GatewayFaults {
  /** Messages reach the gateway and go no further (it dies with them): neither durable nor acknowledged. */
  loseMessages?: boolean;
  /** Messages are made durable but not acknowledged (the test sends the acks). */
  holdAcks?: boolean;
  /** `open` is answered with this close instead of a session. */
  refuseOpen?: { code: number; reason: string };
  /** `open` and `resume` are never answered. */
  silent?: boolean;
  /** WebSocket pings go unanswered, as on a connection that died without a word. */
  noPongs?: boolean;
  /** Right behind the session, in the same breath, an actor frame with this text. */
  greeting?: string;
}

/** A gateway speaking `dormouse.v1` for one actor; it echoes each message as `echo:<text>`. */
class FakeGateway {
  /** Every client frame received, in order, over all its sockets. */
  readonly frames: ClientSessionFrame[] = [];
  readonly paths: string[] = [];
  /** The close codes of its sockets, as the gateway saw them. */
  readonly closes: number[] = [];
  readonly sockets = new Set<WebSocket>();

  private constructor(
    private readonly server: WebSocketServer,
    readonly url: string,
    private readonly actor: FakeActor,
    readonly faults: GatewayFaults,
  ) {
    server.on('connection', (ws, request) => this.accept(ws, request.url ?? ''));
  }

  static async start(actor: FakeActor, faults: GatewayFaults = {}): Promise<FakeGateway> {
    const server = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      autoPong: !faults.noPongs,
      handleProtocols: (protocols) => (protocols.has(SESSION_SUBPROTOCOL) ? SESSION_SUBPROTOCOL : false),
    });
    await once(server, 'listening');
    const gateway = new FakeGateway(
      server,
      `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      actor,
      faults,
    );
    gateways.push(gateway);
    return gateway;
  }

  /** Resolves on the next socket this gateway accepts. */
  nextConnection(): Promise<unknown> {
    return once(this.server, 'connection');
  }

  /** Sends a raw frame (or text) on every socket, as a misbehaving gateway would. */
  inject(frame: GatewaySessionFrame | string): void {
    for (const ws of this.sockets) ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Kills every socket without a close frame, as a dying gateway's host would. */
  terminateAll(): void {
    for (const ws of this.sockets) ws.terminate();
  }

  closeAll(code: number, reason: string): void {
    for (const ws of this.sockets) ws.close(code, reason);
  }

  async stop(): Promise<void> {
    this.terminateAll();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(ws: WebSocket, path: string): void {
    this.paths.push(path);
    this.sockets.add(ws);
    ws.on('close', (code) => {
      this.sockets.delete(ws);
      this.closes.push(code);
    });
    if (ws.protocol !== SESSION_SUBPROTOCOL) return ws.close(ClientCloseCode.SessionProtocolError, 'not dormouse.v1');
    let started = false;
    ws.on('message', (data, isBinary) => {
      const parsed = isBinary ? null : parseClientSessionFrame(wsText(data));
      if (!parsed?.ok) return ws.close(ClientCloseCode.SessionProtocolError, parsed?.error ?? 'binary');
      const frame = parsed.message;
      this.frames.push(frame);
      const opening = frame.t === 'open' || frame.t === 'resume';
      if (opening === started) return ws.close(ClientCloseCode.SessionProtocolError, `unexpected ${frame.t}`);
      started = true;
      if (frame.t === 'open' || frame.t === 'resume') return this.start(ws, frame);
      if (frame.t === 'ack') return this.actor.acknowledged(frame.seq);
      this.takeMessage(ws, frame);
    });
  }

  private start(ws: WebSocket, frame: Extract<ClientSessionFrame, { t: 'open' | 'resume' }>): void {
    const actor = this.actor;
    if (this.faults.silent) return;
    if (frame.t === 'open') {
      if (this.faults.refuseOpen) return ws.close(this.faults.refuseOpen.code, this.faults.refuseOpen.reason);
      actor.holder = ws;
      send(ws, { t: 'session', session: actor.token, index: 0, seq: 0 });
      if (this.faults.greeting) actor.broadcast(this.faults.greeting, { binary: false });
      return;
    }
    if (frame.session !== actor.token) return ws.close(ClientCloseCode.SessionInvalid, 'no such session');
    if (actor.expired) return ws.close(ClientCloseCode.SessionExpired, 'session expired');
    actor.holder = ws;
    actor.acknowledged(frame.seq);
    send(ws, { t: 'session', session: actor.token, index: actor.lastIndex, seq: frame.seq });
    for (const missed of actor.outbox) send(ws, { t: 'msg', ...missed });
  }

  private takeMessage(ws: WebSocket, frame: Extract<ClientSessionFrame, { t: 'msg' }>): void {
    const actor = this.actor;
    if (this.faults.loseMessages || frame.index <= actor.lastIndex) return;
    if (frame.index !== actor.lastIndex + 1) return ws.close(ClientCloseCode.MessageGap, `index ${frame.index}`);
    actor.received.push({ index: frame.index, data: frame.data, binary: frame.binary });
    if (!this.faults.holdAcks) send(ws, { t: 'ack', index: frame.index });
    actor.broadcast(frame.binary ? frame.data : `echo:${frame.data}`, { binary: frame.binary });
  }
}

function send(ws: WebSocket | null, frame: GatewaySessionFrame): void {
  if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
}

const gateways: FakeGateway[] = [];
const sockets: ResumableSocket[] = [];

afterEach(async () => {
  await Promise.all(sockets.splice(0).map((socket) => socket.close()));
  await Promise.all(gateways.splice(0).map((gateway) => gateway.stop()));
});

async function open(
  actor: FakeActor,
  urls: string[],
  options: Partial<Omit<ResumableSocketOptions, 'gateways' | 'actorId'>> = {},
) {
  const socket = await ResumableSocket.open({ gateways: urls, actorId: actor.actorId, ...options });
  sockets.push(socket);
  const messages: (string | Buffer)[] = [];
  socket.on('message', (data) => messages.push(data));
  return { socket, messages };
}

/** The next `event` of `emitter`, or a rejection after WAIT_MS. */
function next(emitter: EventEmitter, event: string): Promise<unknown[]> {
  return once(emitter, event, { signal: AbortSignal.timeout(WAIT_MS) });
}

function until(condition: () => boolean, message: string): Promise<true> {
  return waitFor(() => condition(), { timeoutMs: WAIT_MS, intervalMs: 10, message });
}

const texts = (messages: (string | Buffer)[]) => messages.map((m) => (typeof m === 'string' ? m : m.toString('hex')));

describe('ResumableSocket', () => {
  it('opens a session: the subprotocol, the path, `open` as the first frame', async () => {
    const actor = new FakeActor();
    const gateway = await FakeGateway.start(actor);
    const { socket } = await open(actor, [`${gateway.url}/`], { path: '/room?name=ann' });
    expect(socket).toMatchObject({ session: actor.token, lastSeq: 0, pending: 0, gatewayUrl: gateway.url });
    expect(gateway.paths).toEqual([`/actors/${actor.actorId}/ws/room?name=ann`]);
    expect(gateway.frames).toEqual([{ t: 'open' }]);

    const closed = next(socket, 'close');
    await socket.close();
    expect(await closed).toEqual([1000, 'bye']);
    await until(() => gateway.closes.length === 1, 'the gateway sees the close');
    expect(gateway.closes).toEqual([1000]);
    expect(() => socket.send('late')).toThrow(/closed/);
  });

  it('keeps frames that came with the session for the first message listener', async () => {
    const actor = new FakeActor();
    const gateway = await FakeGateway.start(actor, { greeting: 'welcome' });
    const socket = await ResumableSocket.open({ gateways: [gateway.url], actorId: actor.actorId });
    sockets.push(socket);
    await until(() => socket.lastSeq === 1, 'the greeting received');
    const messages: (string | Buffer)[] = [];
    socket.on('message', (data) => messages.push(data));
    await until(() => messages.length === 1, 'the greeting delivered');
    expect(texts(messages)).toEqual(['welcome']);
  });

  it('numbers its messages, keeps them until acknowledged, and acknowledges the highest seq', async () => {
    const actor = new FakeActor();
    const gateway = await FakeGateway.start(actor, { holdAcks: true });
    const { socket, messages } = await open(actor, [gateway.url]);
    socket.send('a');
    socket.send(Buffer.from([1, 2, 255]));
    socket.send('c');
    expect(socket.pending).toBe(3);
    await until(() => messages.length === 3, 'the three echoes');
    expect(gateway.frames.filter((f) => f.t === 'msg')).toEqual([
      { t: 'msg', index: 1, data: 'a', binary: false },
      { t: 'msg', index: 2, data: Buffer.from([1, 2, 255]).toString('base64'), binary: true },
      { t: 'msg', index: 3, data: 'c', binary: false },
    ]);
    expect(messages).toEqual(['echo:a', Buffer.from([1, 2, 255]), 'echo:c']);
    expect(socket.lastSeq).toBe(3);

    gateway.inject({ t: 'ack', index: 2 });
    await until(() => socket.pending === 1, 'acknowledged messages dropped');
    gateway.inject({ t: 'ack', index: 3 });
    await until(() => socket.pending === 0, 'all acknowledged');

    // Acks are batched and only ever rise; the last one is the highest seq.
    await until(() => actor.outbox.length === 0, 'the client acknowledges every frame');
    const acks = gateway.frames.flatMap((f) => (f.t === 'ack' ? [f.seq] : []));
    expect(acks.at(-1)).toBe(3);
    expect(acks).toEqual([...acks].sort((a, b) => a - b));
    expect(new Set(acks).size).toBe(acks.length);
  });

  it('resumes on the next gateway when its socket dies, resending what was not acknowledged', async () => {
    const actor = new FakeActor();
    const a = await FakeGateway.start(actor);
    const b = await FakeGateway.start(actor);
    const { socket, messages } = await open(actor, [a.url, b.url]);
    socket.send('one');
    await until(() => messages.length === 1 && socket.pending === 0, 'the first echo and ack');

    // Gateway A dies with two client messages and one actor frame in flight.
    a.faults.loseMessages = true;
    socket.send('two');
    socket.send('three');
    await until(() => a.frames.filter((f) => f.t === 'msg').length === 3, 'A got the two messages');
    actor.broadcast('missed', { deliver: false });
    const resumed = next(socket, 'resumed');
    a.terminateAll();
    expect(await resumed).toEqual([b.url]);
    expect(socket.gatewayUrl).toBe(b.url);
    expect(b.frames[0]).toEqual({ t: 'resume', session: actor.token, seq: 1, index: 1 });

    await until(() => messages.length === 4 && socket.pending === 0, 'the missed frame and the resent echoes');
    expect(messages).toEqual(['echo:one', 'missed', 'echo:two', 'echo:three']);
    expect(actor.received.map((m) => `${m.index}:${m.data}`)).toEqual(['1:one', '2:two', '3:three']);
    expect(b.frames.filter((f) => f.t === 'msg').map((f) => f.index)).toEqual([2, 3]);
    expect(socket.lastSeq).toBe(4);
  });

  it('resumes after GoingAway, sending what was written meanwhile after what it resends', async () => {
    const actor = new FakeActor();
    const a = await FakeGateway.start(actor, { loseMessages: true });
    const b = await FakeGateway.start(actor);
    const events: string[] = [];
    const { socket, messages } = await open(actor, [a.url, b.url], { log: (event) => events.push(event) });
    socket.send('lost with A');
    await until(() => a.frames.length === 2, 'A got the message');
    const resumed = next(socket, 'resumed');
    a.closeAll(ClientCloseCode.GoingAway, 'shutting down');
    await until(() => events.includes('socket lost; resuming'), 'the client knows its socket is lost');
    socket.send('written meanwhile');
    expect(socket.pending).toBe(2);
    expect(await resumed).toEqual([b.url]);
    await until(() => messages.length === 2 && socket.pending === 0, 'both echoed and acknowledged');
    expect(messages).toEqual(['echo:lost with A', 'echo:written meanwhile']);
    expect(b.frames[0]).toEqual({ t: 'resume', session: actor.token, seq: 0, index: 0 });
    expect(b.frames.flatMap((f) => (f.t === 'msg' ? [f.index] : []))).toEqual([1, 2]);
  });

  it('resumes elsewhere when its gateway stops answering pings', async () => {
    const actor = new FakeActor();
    const a = await FakeGateway.start(actor, { noPongs: true });
    const b = await FakeGateway.start(actor);
    const { socket, messages } = await open(actor, [a.url, b.url], { pingIntervalMs: 100 });
    const resumed = next(socket, 'resumed');
    actor.broadcast('while dead', { deliver: false });
    expect(await resumed).toEqual([b.url]);
    await until(() => messages.length === 1, 'the frame the dead connection missed');
    expect(messages).toEqual(['while dead']);
  });

  it('delivers each seq once: ignores duplicates, and resumes across a gap from the last seen', async () => {
    const actor = new FakeActor();
    const gateway = await FakeGateway.start(actor);
    const { socket, messages } = await open(actor, [gateway.url]);
    actor.broadcast('one');
    gateway.inject({ t: 'msg', seq: 1, data: 'one', binary: false });
    actor.broadcast('two');
    await until(() => messages.length === 2, 'two frames');

    actor.broadcast('three', { deliver: false });
    const resumed = next(socket, 'resumed');
    actor.broadcast('four'); // seq 4 right after 2: the client drops the socket and resumes
    await resumed;
    await until(() => messages.length === 4, 'the frames after the gap');
    expect(texts(messages)).toEqual(['one', 'two', 'three', 'four']);
    expect(gateway.frames.filter((f) => f.t === 'resume')).toEqual([
      { t: 'resume', session: actor.token, seq: 2, index: 0 },
    ]);
    expect(gateway.closes).toEqual([1006]);
  });

  it.each([
    ['SessionExpired', ClientCloseCode.SessionExpired],
    ['SessionInvalid', ClientCloseCode.SessionInvalid],
    ['SessionResumed', ClientCloseCode.SessionResumed],
    ['OutboxFull', ClientCloseCode.OutboxFull],
  ])('closes for good on %s from the gateway', async (_name, code) => {
    const actor = new FakeActor();
    const gateway = await FakeGateway.start(actor);
    const { socket } = await open(actor, [gateway.url]);
    const closed = next(socket, 'close');
    const reconnect = gateway.nextConnection();
    gateway.closeAll(code, 'the reason');
    expect(await closed).toEqual([code, 'the reason']);
    expect(() => socket.send('late')).toThrow(/closed/);
    // A reconnect would come after at most 100 ms of backoff: none comes within five times that.
    expect(await within(reconnect, 500)).toBeUndefined();
  });

  it('closes for good when a resume is refused as expired', async () => {
    const actor = new FakeActor();
    const gateway = await FakeGateway.start(actor);
    const { socket } = await open(actor, [gateway.url]);
    actor.expired = true;
    const closed = next(socket, 'close');
    gateway.terminateAll();
    expect(await closed).toEqual([ClientCloseCode.SessionExpired, 'session expired']);
    expect(gateway.frames.map((f) => f.t)).toEqual(['open', 'resume']);
  });

  it('gives up resuming after resumeWithinMs', async () => {
    const actor = new FakeActor();
    const gateway = await FakeGateway.start(actor);
    const { socket } = await open(actor, [gateway.url], { resumeWithinMs: 500 });
    const closed = next(socket, 'close');
    await gateway.stop();
    const [code, reason] = await closed;
    expect(code).toBe(1006);
    expect(reason).toMatch(/^not resumed within 500 ms/);
  });

  it('closes with SessionProtocolError on a malformed gateway frame', async () => {
    const actor = new FakeActor();
    const gateway = await FakeGateway.start(actor);
    const { socket } = await open(actor, [gateway.url]);
    const closed = next(socket, 'close');
    gateway.inject('{"t":"msg","seq":0}');
    const [code, reason] = await closed;
    expect(code).toBe(ClientCloseCode.SessionProtocolError);
    expect(reason).toMatch(/invalid frame/);
    await until(() => gateway.closes.length === 1, 'the gateway sees the close');
    expect(gateway.closes).toEqual([ClientCloseCode.SessionProtocolError]);
  });

  it('opens on the next gateway when the first cannot be reached', async () => {
    const actor = new FakeActor();
    const gateway = await FakeGateway.start(actor);
    const { socket } = await open(actor, [await deadUrl(), gateway.url]);
    expect(socket.gatewayUrl).toBe(gateway.url);
    expect(socket.session).toBe(actor.token);
  });

  it('rejects open when the gateway closes before the session, refuses the upgrade, or stays silent', async () => {
    const actor = new FakeActor();
    const refusing = await FakeGateway.start(actor, {
      refuseOpen: { code: ClientCloseCode.ActorNotFound, reason: 'no' },
    });
    const failure = await ResumableSocket.open({ gateways: [refusing.url], actorId: actor.actorId }).catch(
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(SessionClosedError);
    expect(failure).toMatchObject({ code: ClientCloseCode.ActorNotFound, reason: 'no' });

    const http = await httpRefusal(404, { error: { code: 'not_found', message: 'no such actor' } });
    await expect(ResumableSocket.open({ gateways: [http], actorId: actor.actorId })).rejects.toThrow(
      /HTTP 404 no such actor/,
    );

    const silent = await FakeGateway.start(actor, { silent: true });
    await expect(
      ResumableSocket.open({ gateways: [silent.url], actorId: actor.actorId, connectTimeoutMs: 300 }),
    ).rejects.toThrow(/no session within 300 ms/);
  });

  it('rejects bad options with a clear error', async () => {
    const actorId = randomUUID();
    const gateways = ['http://127.0.0.1:1'];
    await expect(ResumableSocket.open({ gateways: [], actorId })).rejects.toThrow(/at least one gateway/);
    await expect(ResumableSocket.open({ gateways: ['ftp://x'], actorId })).rejects.toThrow(
      /"ftp:\/\/x" is not an http/,
    );
    await expect(ResumableSocket.open({ gateways: ['nope'], actorId })).rejects.toThrow(/not an http/);
    await expect(ResumableSocket.open({ gateways, actorId: 'room-1' })).rejects.toThrow(
      /actorId: "room-1" is not a UUID/,
    );
    await expect(ResumableSocket.open({ gateways, actorId, path: 'room' })).rejects.toThrow(/path/);
    await expect(ResumableSocket.open({ gateways, actorId, resumeWithinMs: -1 })).rejects.toThrow(/resumeWithinMs/);
    await expect(ResumableSocket.open({ gateways, actorId, connectTimeoutMs: 0 })).rejects.toThrow(/connectTimeoutMs/);
  });
});

/** A URL on which nothing listens (a port just released). */
async function deadUrl(): Promise<string> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

/** A server that answers every upgrade with this HTTP status and JSON, as the gateway refuses one. */
async function httpRefusal(status: number, body: object): Promise<string> {
  const server: Server = createServer();
  server.on('upgrade', (_request, socket) => {
    const json = JSON.stringify(body);
    socket.end(
      `HTTP/1.1 ${status} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\n` +
        `Connection: close\r\n\r\n${json}`,
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});
