/**
 * The Temporal Web UI as an operator sees it (DESIGN §4), checked in a real browser: headless
 * Chromium (Debian's `chromium`, or CHROMIUM_PATH) driven by playwright-core, on the UI that the
 * run's Temporal dev server serves (global-setup.ts). An actor workflow shows its static summary
 * and details and its current details (the User Metadata tab, rendered markdown), its activity
 * summaries (the timeline and the event history), and the workflow list filters by ActorState.
 *
 * Without Chromium the file is skipped with a message, except under CI=true, where it fails.
 * DORMOUSE_UPDATE_SCREENSHOTS=1 rewrites the screenshots in docs/; every run leaves its own in
 * the run's log directory.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, FrameLocator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { actorWorkflowId } from '../src/workflows/actor-api.js';
import { createActor, waitForActor, type Api } from './harness/actors.js';
import { closeBrowser, findChromium, launchChromium } from './harness/browser.js';
import { actorsApi, type ActorView } from './harness/http.js';
import { createTestStack, type TestStack } from './harness/stack.js';
import { waitFor } from './harness/wait.js';

/** Bound on every wait for the UI (navigation, an element to show up). */
const UI_TIMEOUT_MS = 30_000;
/** Tall enough that the whole timeline of a short-lived actor is in the screenshot. */
const VIEWPORT = { width: 1440, height: 1250 };
const DOCS_DIR = fileURLToPath(new URL('../docs/', import.meta.url));
const UPDATE_SCREENSHOTS = process.env.DORMOUSE_UPDATE_SCREENSHOTS === '1';

const chromiumLookup = findChromium();
if (chromiumLookup.path === undefined) {
  if (/^(true|1)$/i.test(process.env.CI ?? '')) {
    throw new Error(`CI: the Temporal UI browser test needs Chromium, and there is ${chromiumLookup.missing}`);
  }
  console.warn(
    `SKIPPED: the Temporal UI browser test (test/temporal-ui.test.ts) needs Chromium; ${chromiumLookup.missing}`,
  );
}

describe.skipIf(chromiumLookup.path === undefined)('the Temporal UI', () => {
  let stack: TestStack;
  let api: Api;
  let browser: Browser | undefined;
  let page: Page;
  let uiUrl: string;
  /** Ran generation 1, then was put to sleep, and after a quiet while continued as new. */
  let sleeper: ActorView & { runnerId: string };
  /** The sleeper's first run (the one that started and stopped it) and its latest (asleep). */
  let sleeperRuns: { first: string; latest: string };
  /** Left running (for an hour). */
  let awake: ActorView;
  let resting: ActorView;

  beforeAll(async () => {
    uiUrl = inject('temporalUiUrl');
    stack = await createTestStack();
    api = actorsApi(stack.gatewayUrl);

    const created = await createActor(api, { name: 'chat', key: 'lobby' });
    const running = await waitForActor(api, created.actorId, (a) => a.state === 'running', 'running');
    if (running.runnerId === null) throw new Error(`running actor ${running.actorId} has no runner`);
    sleeper = { ...running, runnerId: running.runnerId };
    expect((await api.sleep(sleeper.actorId)).status).toBe(202);
    await waitForActor(api, sleeper.actorId, (a) => a.state === 'sleeping', 'asleep on request');
    // Neither resting (after the default 10 s) nor sleeping while the browser looks at the others.
    awake = await createActor(api, {
      name: 'chat',
      key: 'kitchen',
      input: { restAfterMs: 3_600_000, sleepAfterMs: 3_600_000 },
    });
    await waitForActor(api, awake.actorId, (a) => a.state === 'running', 'running');
    // Resting in place soon, and then for the rest of the test.
    resting = await createActor(api, {
      name: 'chat',
      key: 'pantry',
      input: { restAfterMs: 200, sleepAfterMs: 3_600_000 },
    });
    await waitForActor(api, resting.actorId, (a) => a.state === 'running', 'running');
    sleeperRuns = await waitFor(
      async () => {
        const run = await stack.temporal.workflow.getHandle(actorWorkflowId(sleeper.actorId)).describe();
        const first = run.raw.workflowExecutionInfo?.firstRunId;
        return first && first !== run.runId ? { first, latest: run.runId } : undefined;
      },
      { timeoutMs: UI_TIMEOUT_MS, message: 'the sleeper continued as new after its quiet while asleep' },
    );

    // The dev server is up once its frontend answers; its UI may come a moment later.
    await waitFor(async () => (await fetch(uiUrl, { signal: AbortSignal.timeout(5_000) })).ok, {
      timeoutMs: UI_TIMEOUT_MS,
      message: `the Temporal UI at ${uiUrl}`,
    });
    browser = await launchChromium(chromiumLookup.path!);
    page = await browser.newPage({ viewport: VIEWPORT });
    page.setDefaultTimeout(UI_TIMEOUT_MS);
    page.setDefaultNavigationTimeout(UI_TIMEOUT_MS);
    // The UI's own outside requests (its news feed at newsfeed.temporal.io) fail fast instead
    // of depending on the network: only the dev server's UI is in the test.
    const uiOrigin = new URL(uiUrl).origin;
    await page.route(
      (url) => url.origin !== uiOrigin,
      (route) => route.abort('blockedbyclient'),
    );
  });

  afterAll(async () => {
    // Both, even when one fails.
    const results = await Promise.allSettled([closeBrowser(browser), stack?.stop()]);
    const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (errors.length > 0) throw new AggregateError(errors, 'closing the browser or stopping the stack failed');
  });

  it("shows an actor workflow's summary, current details and activity summaries", async () => {
    const workflowId = actorWorkflowId(sleeper.actorId);
    const runId = sleeperRuns.first;
    const workflowPath = `/namespaces/${stack.namespace}/workflows/${encodeURIComponent(workflowId)}`;
    const key = sleeper.key!;
    const runner = sleeper.runnerId;

    await onFailureDump('workflow', async () => {
      // The workflow id alone redirects to its latest run, on the Timeline tab; the first run
      // holds the actor's life until it fell asleep.
      await page.goto(`${uiUrl}${workflowPath}`);
      await page.waitForURL((url) => url.pathname === `${workflowPath}/${sleeperRuns.latest}/timeline`);
      await page.goto(`${uiUrl}${workflowPath}/${runId}/timeline`);
      await page.waitForURL((url) => url.pathname === `${workflowPath}/${runId}/timeline`);
      await visible(page.getByRole('heading', { name: workflowId }));

      // The timeline labels each activity `<type> • <summary>`, cutting long ones short; the local
      // activities (markers: the start's reads, the state records) by their type alone (UI 2.54).
      for (const label of [
        'allocateAndSnapshot',
        'recordActorState',
        `insertAndSendCommands • stop generation 1 on runner ${runner} (sleep)`,
      ]) {
        await visible(page.getByText(label, { exact: true }));
      }
      await visible(page.getByText(`insertAndSendCommands • start generation 1 on runner ${runner} (create)`));
      await screenshot('temporal-ui-actor.png');

      // The event history shows every summary whole, the workflow's own (as its raw markdown) too.
      await page.getByRole('tab', { name: 'Event History' }).click();
      await page.waitForURL((url) => url.pathname === `${workflowPath}/${runId}/history`);
      for (const summary of [
        `actor **chat** key \`${key}\``,
        'allocate generation 1 (create); snapshot hibernating requests for generation 1',
        `start generation 1 on runner ${runner} (create) with 0 hibernating requests`,
        'start threshold',
        'record running',
        `stop generation 1 on runner ${runner} (sleep)`,
        'record stopping',
        'record sleeping',
      ]) {
        await visible(page.getByText(summary, { exact: true }));
      }

      // Static summary and details and the current details, each markdown rendered in a frame.
      await page.getByRole('tab', { name: 'User Metadata' }).click();
      await page.waitForURL((url) => url.pathname === `${workflowPath}/${runId}/user-metadata`);
      const summary = page.frameLocator('#user-metadata-summary');
      await visible(summary.locator('strong', { hasText: /^chat$/ }));
      await visible(summary.locator('code', { hasText: new RegExp(`^${key}$`) }));
      expect(await frameText(summary)).toBe(`actor chat key ${key}`);

      const details = page.frameLocator('#user-metadata-details');
      await visible(details.locator('code', { hasText: new RegExp(`^${sleeper.actorId}$`) }));
      expect(await frameText(details)).toBe(`actor id ${sleeper.actorId}, crash policy restart`);

      const current = page.frameLocator('#user-metadata-current-details');
      await visible(current.locator('strong', { hasText: /^sleeping$/ }));
      expect(await frameText(current)).toMatch(/^sleeping · generation 1(?: · |$)/);
      await screenshot('temporal-ui-actor-metadata.png');
    });
  });

  it('filters the workflow list by ActorState, resting in place included', async () => {
    const sleeperId = actorWorkflowId(sleeper.actorId);
    const awakeId = actorWorkflowId(awake.actorId);
    const restingId = actorWorkflowId(resting.actorId);
    for (const [state, shown, hidden] of [
      ['sleeping', sleeperId, awakeId],
      ['running', awakeId, restingId],
      ['resting', restingId, awakeId],
    ] as const) {
      const query = `ActorState="${state}"`;
      // Visibility lags the workflow a little: the server must answer the query first, so that
      // the one page load below sees what the UI will ever see.
      await waitFor(
        async () => {
          const ids: string[] = [];
          for await (const execution of stack.temporal.workflow.list({ query })) ids.push(execution.workflowId);
          return ids.includes(shown) && !ids.includes(hidden);
        },
        { timeoutMs: UI_TIMEOUT_MS, message: `visibility: ${query} lists ${shown} and not ${hidden}` },
      );

      await onFailureDump(`list-${state}`, async () => {
        await page.goto(`${uiUrl}/namespaces/${stack.namespace}/workflows?query=${encodeURIComponent(query)}`);
        // The UI took the query as its filter...
        await visible(page.getByText(`ActorState = "${state}"`, { exact: true }));
        // ...and lists the one workflow in that state, not the other.
        await visible(page.getByRole('link', { name: shown, exact: true }));
        expect(await page.getByText(hidden).count()).toBe(0);
        if (state === 'sleeping') await screenshot('temporal-ui-list-sleeping.png', { docs: false });
      });
    }
  });

  /** Waits (bounded by the page's timeout) for the first match to be visible. */
  async function visible(locator: ReturnType<Page['locator']>): Promise<void> {
    await locator.first().waitFor({ state: 'visible' });
  }

  /** The rendered text of a markdown frame, whitespace collapsed. */
  async function frameText(frame: FrameLocator): Promise<string> {
    return (await frame.locator('body').innerText()).replace(/\s+/g, ' ').trim();
  }

  /** Into the run's logs always; into docs/ with DORMOUSE_UPDATE_SCREENSHOTS=1. */
  async function screenshot(name: string, options: { docs?: boolean } = {}): Promise<void> {
    await mkdir(stack.logDir, { recursive: true });
    const png = await page.screenshot({ fullPage: true });
    await writeFile(join(stack.logDir, name), png);
    if (UPDATE_SCREENSHOTS && options.docs !== false) {
      await mkdir(DOCS_DIR, { recursive: true });
      await writeFile(join(DOCS_DIR, name), png);
    }
  }

  /** Leaves the page's screenshot, URL and text in the run's logs when `fn` fails. */
  async function onFailureDump(name: string, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      const base = join(stack.logDir, `ui-failure-${name}`);
      await mkdir(stack.logDir, { recursive: true }).catch(() => undefined);
      await page.screenshot({ path: `${base}.png`, fullPage: true, timeout: 5_000 }).catch(() => undefined);
      const text = await page
        .locator('body')
        .innerText({ timeout: 5_000 })
        .catch((e: unknown) => `(no text: ${String(e)})`);
      await writeFile(`${base}.txt`, `${page.url()}\n\n${text}`).catch(() => undefined);
      throw new Error(
        `${err instanceof Error ? err.message : String(err)}\n(the page as it was: ${base}.png, ${base}.txt)`,
        { cause: err },
      );
    }
  }
});
