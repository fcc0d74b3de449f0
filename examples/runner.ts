/**
 * A runner process hosting the demo actors; `npm start` runs two of these. It connects to the
 * gateways of DORMOUSE_RUNNER_GATEWAY_URLS (comma-separated, its own first: it moves to the next
 * when its gateway goes away), or to DORMOUSE_GATEWAY_URL alone.
 */
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { createRunner } from '../src/runner/index.js';
import { chat } from './chat.js';

const config = loadConfig();
const log = createLogger('runner', config.logLevel);
const runner = createRunner({
  gatewayUrl: config.runner.gatewayUrls,
  actors: [chat],
  pool: config.runner.pool,
  capacity: config.runner.capacity,
  restCacheBytes: config.runner.restCacheBytes,
  ...(config.runner.token ? { token: config.runner.token } : {}),
  defaultRestAfterMs: config.timing.restAfterMs,
  defaultSleepAfterMs: config.timing.sleepAfterMs,
  log,
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    runner.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'runner shutdown failed');
        process.exit(1);
      },
    );
  });
}

await runner.start();
log.info({ runnerId: runner.runnerId }, 'ready');
