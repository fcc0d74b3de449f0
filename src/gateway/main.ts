/** `tsx src/gateway/main.ts` and `dormouse gateway`: one gateway from the environment (see config.ts). */
import { loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import { runIfEntryScript, shutdownSignal } from '../process-entry.js';
import { startGateway } from './gateway.js';

/**
 * Runs the gateway until SIGINT or SIGTERM, then closes it. Its failure goes to the same pino
 * stream as everything else, so that whoever collects the logs sees why a gateway died.
 * Resolves with the process's exit code.
 */
export async function runGatewayProcess(): Promise<number> {
  // Made before the configuration is read, so that a bad configuration is logged like any failure.
  const log = createLogger('gateway', 'info');
  try {
    const config = loadConfig();
    log.level = config.logLevel;
    const gateway = await startGateway(config, log);
    log.info({ url: gateway.url, gatewayId: gateway.gatewayId }, 'ready');
    const signal = await shutdownSignal();
    log.info({ signal }, 'shutting down');
    await gateway.close();
    log.info('stopped');
    return 0;
  } catch (err) {
    log.fatal({ err }, 'gateway failed');
    return 1;
  }
}

runIfEntryScript(import.meta.url, runGatewayProcess);
