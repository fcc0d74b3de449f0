/**
 * Headless Chromium for tests that look at a web page the way an operator does: the system's
 * Chromium (Debian's `chromium` package; CHROMIUM_PATH to use another), driven by
 * `playwright-core`, which downloads no browsers of its own.
 *
 *   const found = findChromium();                  // { path } or { missing: '…why…' }
 *   const browser = await launchChromium(found.path);
 *   afterAll(() => closeBrowser(browser));
 */
import { accessSync, constants } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { within } from '../../dev/wait.js';

export const DEFAULT_CHROMIUM_PATH = '/usr/bin/chromium';
const LAUNCH_TIMEOUT_MS = 30_000;
const CLOSE_TIMEOUT_MS = 10_000;

/**
 * Flags for a test machine without outside network: no sandbox (root in a container), no GPU,
 * and none of Chromium's own connections (component updates, sync, QUIC, background requests),
 * which are refused there. Playwright passes most of them too, and a fresh `--user-data-dir` of
 * its own per launch (it refuses one in `args`), removed again on close.
 */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

export type ChromiumLookup = { path: string } | { path?: undefined; missing: string };

/** The Chromium executable to use: CHROMIUM_PATH, else /usr/bin/chromium, if it is executable. */
export function findChromium(env: NodeJS.ProcessEnv = process.env): ChromiumLookup {
  const path = env.CHROMIUM_PATH || DEFAULT_CHROMIUM_PATH;
  try {
    accessSync(path, constants.X_OK);
    return { path };
  } catch {
    const source = env.CHROMIUM_PATH ? 'CHROMIUM_PATH' : 'the default path';
    return {
      missing:
        `no Chromium at ${path} (${source}): install Debian's chromium ` +
        '(`apt-get install -y --no-install-recommends chromium`) or set CHROMIUM_PATH to a Chromium executable',
    };
  }
}

export async function launchChromium(executablePath: string): Promise<Browser> {
  return chromium.launch({
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: LAUNCH_TIMEOUT_MS,
  });
}

/**
 * Closes the browser within a bound. One that hangs fails the caller; Playwright kills the
 * browsers it launched when the test process exits.
 */
export async function closeBrowser(browser: Browser | undefined): Promise<void> {
  if (!browser) return;
  const closing = browser.close().then(() => true);
  // A close that fails after the deadline must not surface as an unhandled rejection.
  closing.catch(() => undefined);
  if ((await within(closing, CLOSE_TIMEOUT_MS)) === undefined) {
    throw new Error(`Chromium did not close within ${CLOSE_TIMEOUT_MS} ms`);
  }
}
