/** `tsx src/gateway/main.ts`: runs one gateway from the environment (see config.ts). */
import { loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import { startGateway } from './gateway.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger('gateway', config.logLevel);
  const gateway = await startGateway(config, log);
  log.info({ url: gateway.url, gatewayId: gateway.gatewayId }, 'ready');
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'shutting down');
      gateway.close().then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
