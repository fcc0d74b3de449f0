/** `tsx src/gateway/main.ts` and `dormouse gateway`: one gateway from the environment (see config.ts). */
import { runIfEntryScript, runService } from '../process-entry.js';
import { startGateway } from './gateway.js';

/** Runs the gateway until SIGINT or SIGTERM, then closes it; resolves with the exit code. */
export function runGatewayProcess(): Promise<number> {
  return runService('gateway', async (config, log) => {
    const gateway = await startGateway(config, log);
    log.info({ url: gateway.url, gatewayId: gateway.gatewayId }, 'ready');
    return { stop: () => gateway.close() };
  });
}

runIfEntryScript(import.meta.url, runGatewayProcess);
