/**
 * The first request to a starting actor goes to it as soon as the runner given the start reports
 * it running (src/gateway/actor-watch.ts), not a workflow round later when the registry records
 * `running`. Proved by holding that record back: the reply arrives while the registry still says
 * `starting`. The worker runs in this process so that a fault hook can hold the activity.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Faults } from '../src/activities/index.js';
import type { RunningWorker } from '../src/worker.js';
import { actorRequest, createActor, getActor, waitForActor, type Api } from './harness/actors.js';
import { actorsApi } from './harness/http.js';
import { startInProcessWorker } from './harness/in-process-worker.js';
import { createTestStack, type TestStack } from './harness/stack.js';

/** Far longer than a start takes: a reply that waited for the held record would come after it. */
const HOLD_MS = 60_000;

let stack: TestStack;
let api: Api;
let worker: RunningWorker;
/** Resolved by the test; the hook holds the record until then (or HOLD_MS), however late it starts. */
let release: () => void = () => undefined;
const released = new Promise<void>((resolve) => (release = resolve));

const faults: Faults = {
  async beforeRecordActorState(change) {
    if (change.state !== 'running') return; // this file's one actor
    await Promise.race([released, new Promise((resolve) => setTimeout(resolve, HOLD_MS).unref())]);
  },
};

beforeAll(async () => {
  stack = await createTestStack({ workers: 0, runners: [{ name: 'runner' }] });
  api = actorsApi(stack.gatewayUrl);
  worker = await startInProcessWorker(stack, faults);
});
afterAll(async () => {
  release();
  await worker?.shutdown();
  await stack?.stop();
});

describe('the first request to a new actor', () => {
  it('is answered once its runner reports running, before the workflow records it', async () => {
    const actor = await createActor(api, { name: 'chat', key: 'first-reply' });
    const reply = await actorRequest<{ generation: number }>(stack.gatewayUrl, actor.actorId, '/state');
    expect(reply).toMatchObject({ status: 200, body: { generation: 1 } });
    expect(await getActor(api, actor.actorId)).toMatchObject({ state: 'starting', generation: 1 });

    release();
    await waitForActor(api, actor.actorId, (a) => a.state === 'running', 'recorded running');
  });
});
