/**
 * The gateway container's health check (docker-compose.yml): exits 0 when GET /healthz on this
 * container's gateway answers 2xx within two seconds, 1 otherwise. It reads the port from the
 * same configuration as the gateway (src/config.ts), so the two cannot disagree. Plain ESM, run as
 * `node docker/gateway-healthcheck.mjs` from the image's /app, where src/ is compiled to .js.
 */
import { loadConfig } from '../src/config.js';

const TIMEOUT_MS = 2_000;

try {
  const { gateway, auth } = loadConfig();
  // A gateway listening on every interface is reached on loopback from inside its container.
  const host = ['0.0.0.0', '::', '[::]'].includes(gateway.host) ? '127.0.0.1' : gateway.host;
  const response = await fetch(`http://${host.includes(':') ? `[${host}]` : host}:${gateway.port}/healthz`, {
    // /healthz is open today; should it ever need the admin token, the check still passes.
    headers: auth.adminToken ? { authorization: `Bearer ${auth.adminToken}` } : {},
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  if (!response.ok) throw new Error(`GET /healthz answered ${response.status}`);
  process.exit(0);
} catch (err) {
  console.error(`unhealthy: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
