/**
 * Resumable sessions (H10, subprotocol `dormouse.v1`) with real processes: a client whose socket
 * or gateway dies resumes on another gateway, and the actor sees one continuous connection.
 */
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import type { ChatMessage } from '../examples/chat.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ResumableSocket } from '../src/client/index.js';
import { ClientCloseCode } from '../src/protocol/client-close-codes.js';
import {
  SESSION_SUBPROTOCOL,
  parseGatewaySessionFrame,
  type GatewaySessionFrame,
} from '../src/protocol/session-protocol.js';
import { wsText } from '../src/util/ws-data.js';
import { actorRequest, createActor, waitForActor, type Api, type ChatView } from './harness/actors.js';
import { actorsApi } from './harness/http.js';
import { createTestStack, type GatewayProcess, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';
import { TestClient } from './harness/ws-client.js';

let stack: TestStack;
let api: Api;
let gatewayA: GatewayProcess;
let gatewayB: GatewayProcess;

beforeAll(async () => {
  stack = await createTestStack({
    nats: true,
    runners: [],
    workers: 1,
    env: { DORMOUSE_RUNNER_LOST_MS: '3000', DORMOUSE_RUNNER_PING_MS: '500' },
  });
  gatewayA = stack.gateway!;
  gatewayB = await stack.startGateway({ name: 'gateway-b' });
  // The runner sits on gateway B; gateway A holds only clients (and is the one killed last).
  await stack.startRunner({ name: 'runner-b', env: { DORMOUSE_GATEWAY_URL: gatewayB.url } });
  api = actorsApi(gatewayA.url);
}, 120_000);
afterAll(() => stack?.stop());

/** A bare `dormouse.v1` client, to say exactly what a test needs, right or wrong. */
class RawSession {
  readonly frames: GatewaySessionFrame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const parsed = parseGatewaySessionFrame(wsText(data));
      if (parsed.ok) this.frames.push(parsed.message);
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
  }

  static async connect(gatewayUrl: string, actorId: string, first: unknown, path = '?name=raw'): Promise<RawSession> {
    const ws = new WebSocket(`${gatewayUrl.replace(/^http/, 'ws')}/actors/${actorId}/ws${path}`, SESSION_SUBPROTOCOL);
    const session = new RawSession(ws);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    expect(ws.protocol).toBe(SESSION_SUBPROTOCOL);
    ws.send(typeof first === 'string' ? first : JSON.stringify(first));
    return session;
  }

  send(frame: unknown): void {
    this.ws.send(JSON.stringify(frame));
  }

  async next<T extends GatewaySessionFrame['t']>(t: T, count = 1): Promise<Extract<GatewaySessionFrame, { t: T }>[]> {
    const of = () => this.frames.filter((f): f is Extract<GatewaySessionFrame, { t: T }> => f.t === t);
    await waitFor(() => of().length >= count, { timeoutMs: 20_000, message: `${count} ${t} frames` });
    return of();
  }
}

const chatTexts = (frames: { data: string }[]) => frames.map((f) => (JSON.parse(f.data) as ChatMessage).text);
const connections = async (actorId: string) =>
  (await actorRequest<ChatView>(gatewayB.url, actorId, '/state')).body.connections;

describe('a resumable session', () => {
  it('numbers both ways, and resumes on another gateway as the same connection', async () => {
    const room = await createActor(api, { name: 'chat', key: 'resume-raw' });
    const first = await RawSession.connect(gatewayA.url, room.actorId, { t: 'open' });
    const [session] = await first.next('session');
    expect(session).toMatchObject({ index: 0, seq: 0 });
    first.send({ t: 'msg', index: 1, data: 'one', binary: false });
    await first.next('ack');
    const [msg] = await first.next('msg');
    expect(msg!.seq).toBe(1);
    first.send({ t: 'ack', seq: 1 });
    first.send({ t: 'msg', index: 2, data: 'two', binary: false });
    await first.next('msg', 2);
    // Frame 2 reached the client but it never acknowledged it: it comes again after the resume.
    first.ws.terminate();

    const second = await RawSession.connect(gatewayB.url, room.actorId, {
      t: 'resume',
      session: session!.session,
      seq: 1,
      index: 2,
    });
    const [resumed] = await second.next('session');
    expect(resumed).toMatchObject({ session: session!.session, index: 2, seq: 1 });
    const [again] = await second.next('msg');
    expect(again!.seq).toBe(2);
    second.send({ t: 'ack', seq: 2 });
    second.send({ t: 'msg', index: 3, data: 'three', binary: false });
    const msgs = await second.next('msg', 2);
    expect(msgs.map((m) => m.seq)).toEqual([2, 3]);
    expect(chatTexts(msgs)).toEqual(['two', 'three']);
    expect(await connections(room.actorId)).toBe(1); // one continuous connection at the actor

    // The actor restarts (sleep, then a wake): its start restores the session where it now is.
    second.send({ t: 'ack', seq: 3 });
    expect((await api.sleep(room.actorId)).status).toBe(202);
    await waitForActor(api, room.actorId, (a) => a.state === 'sleeping', 'asleep');
    second.send({ t: 'msg', index: 4, data: 'four', binary: false });
    const after = await second.next('msg', 3);
    expect(after.map((m) => m.seq)).toEqual([2, 3, 4]);
    expect(await connections(room.actorId)).toBe(1);
    second.ws.close(1000);
    expect((await second.closed).code).toBe(1000);
    await waitFor(async () => (await connections(room.actorId)) === 0, { timeoutMs: 10_000, message: 'closed' });
  });

  it('stays the same connection when its actor restarts on another runner right after the resume', async () => {
    const room = await createActor(api, { name: 'chat', key: 'resume-then-crash' });
    const first = await RawSession.connect(gatewayA.url, room.actorId, { t: 'open' });
    const [session] = await first.next('session');
    first.send({ t: 'msg', index: 1, data: 'one', binary: false });
    await first.next('msg');
    first.send({ t: 'ack', seq: 1 });
    await first.next('ack');
    first.ws.terminate();
    const second = await RawSession.connect(gatewayB.url, room.actorId, {
      t: 'resume',
      session: session!.session,
      seq: 1,
      index: 1,
    });
    await second.next('session');

    // Its runner dies before the actor writes anything: the next generation's snapshot names the
    // session on gateway B, the actor's record still gateway A.
    const runner = stack.runners.find((r) => r.name === 'runner-b')!;
    runner.kill('SIGKILL');
    await runner.exited;
    await stack.startRunner({ name: 'runner-b2', env: { DORMOUSE_GATEWAY_URL: gatewayB.url } });
    await waitForActor(api, room.actorId, (a) => a.state === 'running' && a.generation === 2, 'moved', 30_000);

    second.send({ t: 'msg', index: 2, data: 'two', binary: false });
    const msgs = await second.next('msg');
    expect(msgs.map((m) => m.seq)).toEqual([2]);
    expect(second.frames.some((f) => f.t === 'ack' && f.index === 2)).toBe(true);
    expect(await connections(room.actorId)).toBe(1);
    second.ws.close(1000);
    expect((await second.closed).code).toBe(1000);
  });

  it('refuses a wrong token, another actor’s token, an ended session and an expired one, changing nothing', async () => {
    const room = await createActor(api, { name: 'chat', key: 'resume-refusals' });
    const other = await createActor(api, { name: 'chat', key: 'resume-refusals-other' });
    const live = await RawSession.connect(gatewayA.url, room.actorId, { t: 'open' });
    const [{ session: token }] = (await live.next('session')) as unknown as [{ session: string }];
    const requestId = token.slice(0, 36);
    const resume = (url: string, actorId: string, session: string) =>
      RawSession.connect(url, actorId, { t: 'resume', session, seq: 0, index: 0 });

    const forged = await resume(gatewayB.url, room.actorId, `${requestId}.${randomBytes(24).toString('base64url')}`);
    expect(await forged.closed).toMatchObject({ code: ClientCloseCode.SessionInvalid });
    const elsewhere = await resume(gatewayB.url, other.actorId, token);
    expect(await elsewhere.closed).toMatchObject({ code: ClientCloseCode.SessionInvalid });
    // Nothing moved: the session is still the live socket's, on gateway A.
    const row = await stack.db.query<{ gateway_id: string }>(
      'SELECT gateway_id FROM client_sessions WHERE request_id = $1',
      [requestId],
    );
    expect(row.rows).toHaveLength(1);
    live.send({ t: 'msg', index: 1, data: 'still here', binary: false });
    expect((await live.next('msg'))[0]!.seq).toBe(1);

    // Lost, and not resumed within the retention (its clock moved on in the registry).
    live.ws.terminate();
    await waitFor(
      async () =>
        (
          await stack.db.query('SELECT 1 FROM client_sessions WHERE request_id = $1 AND detached_at IS NOT NULL', [
            requestId,
          ])
        ).rowCount === 1,
      { timeoutMs: 10_000, message: 'session detached' },
    );
    await stack.db.query(`UPDATE client_sessions SET detached_at = now() - interval '1 hour' WHERE request_id = $1`, [
      requestId,
    ]);
    const late = await resume(gatewayB.url, room.actorId, token);
    expect(await late.closed).toMatchObject({ code: ClientCloseCode.SessionExpired });

    // Ended for good by its client: nothing to resume.
    const ended = await RawSession.connect(gatewayA.url, room.actorId, { t: 'open' });
    const [{ session: endedToken }] = (await ended.next('session')) as unknown as [{ session: string }];
    ended.ws.close(1000);
    await ended.closed;
    await waitFor(
      async () =>
        (await stack.db.query('SELECT 1 FROM client_sessions WHERE request_id = $1', [endedToken.slice(0, 36)]))
          .rowCount === 0,
      { timeoutMs: 10_000, message: 'session row gone' },
    );
    const afterEnd = await resume(gatewayB.url, room.actorId, endedToken);
    expect(await afterEnd.closed).toMatchObject({ code: ClientCloseCode.SessionInvalid });
  });

  it('closes on a broken rule: a resume past the last frame sent, a misnumbered message, garbage', async () => {
    const room = await createActor(api, { name: 'chat', key: 'resume-rules' });
    const first = await RawSession.connect(gatewayA.url, room.actorId, { t: 'open' });
    const [{ session: token }] = (await first.next('session')) as unknown as [{ session: string }];
    first.send({ t: 'msg', index: 1, data: 'one', binary: false });
    await first.next('msg');
    first.ws.terminate();
    const beyond = await RawSession.connect(gatewayB.url, room.actorId, {
      t: 'resume',
      session: token,
      seq: 99,
      index: 1,
    });
    const closed = await beyond.closed;
    expect(closed.code).toBe(ClientCloseCode.SessionProtocolError);
    expect(closed.reason).toMatch(/last frame sent was 1/);

    const misnumbered = await RawSession.connect(gatewayA.url, room.actorId, { t: 'open' });
    await misnumbered.next('session');
    misnumbered.send({ t: 'msg', index: 5, data: 'skip', binary: false });
    expect(await misnumbered.closed).toMatchObject({ code: ClientCloseCode.SessionProtocolError });
    const garbage = await RawSession.connect(gatewayA.url, room.actorId, 'not json');
    expect(await garbage.closed).toMatchObject({ code: ClientCloseCode.SessionProtocolError });
  });

  it('survives a SIGKILL of its gateway with broadcasts in flight: every seq exactly once', async () => {
    const room = await createActor(api, { name: 'chat', key: 'resume-kill' });
    const ann = await ResumableSocket.open({
      gateways: [gatewayA.url, gatewayB.url],
      actorId: room.actorId,
      path: '?name=ann',
    });
    const seen: ChatMessage[] = [];
    ann.on('message', (data) => seen.push(JSON.parse(data.toString()) as ChatMessage));
    const bob = await TestClient.connect(gatewayB.url, room.actorId, '?name=bob');
    const TOTAL = 60;
    for (let i = 1; i <= TOTAL / 2; i++) bob.send(`bob-${i}`);
    for (let i = 1; i <= 5; i++) ann.send(`ann-${i}`);
    await waitFor(() => seen.length >= 5, { timeoutMs: 20_000, message: 'ann hears the room' });

    gatewayA.kill('SIGKILL'); // mid-burst: the room keeps broadcasting to ann's session
    for (let i = TOTAL / 2 + 1; i <= TOTAL; i++) bob.send(`bob-${i}`);
    let resumed = false;
    ann.once('resumed', () => (resumed = true));
    await waitFor(() => resumed, { timeoutMs: 20_000, message: 'ann resumed' });
    expect(ann.gatewayUrl).toBe(gatewayB.url);
    for (let i = 6; i <= 10; i++) ann.send(`ann-${i}`);

    await waitFor(() => seen.length >= TOTAL + 10, { timeoutMs: 30_000, message: 'every broadcast at ann' });
    await bob.waitForMessages(TOTAL + 10, 30_000);
    expect(seen.map((f) => f.seq)).toEqual(Array.from({ length: TOTAL + 10 }, (_, i) => i + 1));
    expect(seen.filter((f) => f.from === 'ann').map((f) => f.text)).toEqual(
      Array.from({ length: 10 }, (_, i) => `ann-${i + 1}`),
    );
    expect(await connections(room.actorId)).toBe(2); // ann's session is still one connection
    await ann.close();
    bob.close();
  });
});
