/**
 * The gateway: client HTTP API and tunnels, the runner endpoint, and the gateway's side of the
 * control plane (LISTEN for commands and actor state, batched runner pings, its own heartbeat).
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { requireGatewayTokens, type Config } from '../config.js';
import { ACTOR_STATE_CHANNEL, COMMANDS_CHANNEL, parseActorStateNotice } from '../db/channels.js';
import { registerGateway, setGatewayAddress, unregisterGateway } from '../db/gateways.js';
import { migrate } from '../db/migrate.js';
import { createPool } from '../db/pool.js';
import type { Logger } from '../log.js';
import { connectClient } from '../temporal-client.js';
import { checkFleetBus } from './fleet-bus-check.js';
import { GatewayHeartbeat } from './heartbeat.js';
import { GatewayMetrics } from './metrics.js';
import { errorHandler, notFoundHandler } from './errors.js';
import { registerHttpTunnel } from './http-tunnel.js';
import { registerManagementApi } from './management-api.js';
import { NotificationListener } from './notifications.js';
import { RunnerPings } from './runner-pings.js';
import { Tunnel } from './tunnel.js';

export interface RunningGateway {
  gatewayId: string;
  /** Base URL clients and runners use, with the port actually bound. */
  url: string;
  close(): Promise<void>;
}

export async function startGateway(config: Config, log: Logger): Promise<RunningGateway> {
  if (!config.databaseUrl) throw new Error('DATABASE_URL is not set: the gateway needs Postgres');
  requireGatewayTokens(config);
  await migrate(config.databaseUrl, log);
  const gatewayId = config.gateway.id ?? `gw-${hostname()}-${randomUUID().slice(0, 8)}`;
  log = log.child({ gatewayId });
  const db = createPool(config.databaseUrl, { max: 20, applicationName: 'dormouse-gateway', log });
  const client = await connectClient(config);

  const pings = new RunnerPings(db, gatewayId, config.timing.runnerPingMs, log);
  const metrics = new GatewayMetrics(db);
  const tunnel = new Tunnel({
    db,
    client,
    config,
    log,
    gatewayId,
    touch: (runner) => pings.touch(runner),
    onWake: (actorId, trigger) => metrics.wakeRequested(actorId, trigger),
  });
  metrics.watchSockets(() => tunnel.stats());
  const { natsServers } = config.gateway;
  await checkFleetBus(db, gatewayId, natsServers !== undefined, config.timing.hibernationThresholdMs);
  if (natsServers) await tunnel.joinBus(natsServers);
  const listener = new NotificationListener(config.databaseUrl, log, () => tunnel.onNotificationsLost());
  listener.on(COMMANDS_CHANNEL, (runnerId) => tunnel.runners.onCommandsQueued(runnerId));
  listener.on(ACTOR_STATE_CHANNEL, (payload) => {
    const notice = parseActorStateNotice(payload);
    if (!notice) return log.warn({ payload }, 'unreadable actor state notice');
    tunnel.onActorState(notice);
    metrics.onNotice(notice);
  });
  await listener.start();

  const app = buildApp(config, log);
  registerManagementApi(app, { db, client, config });
  registerHttpTunnel(app, { config, tunnel });
  app.get('/healthz', async () => ({
    ok: true,
    gatewayId,
    bus: natsServers ? 'nats' : 'none',
    runners: tunnel.runners.connections().length,
    waiting: tunnel.waiting,
    ...tunnel.stats(),
  }));
  app.get('/metrics', async (_request, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  app.server.on('upgrade', (request, socket, head) => tunnel.handleUpgrade(request, socket, head));

  // Registered before it listens: registering clears rows left under this id, which must not
  // catch a socket accepted in between.
  await registerGateway(db, gatewayId, config.gateway.url);
  await app.listen({ host: config.gateway.host, port: config.gateway.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.gateway.port;
  const url = `http://${config.gateway.host}:${port}`;
  if (url !== config.gateway.url) await setGatewayAddress(db, gatewayId, url);
  const heartbeat = new GatewayHeartbeat(db, gatewayId, url, config.timing, log, () => tunnel.abandonHibernatable());

  return {
    gatewayId,
    url,
    async close() {
      heartbeat.stop();
      pings.stop();
      await tunnel.close();
      await app.close();
      await listener.close();
      await pings.flush();
      await unregisterGateway(db, gatewayId).catch((err: unknown) =>
        log.error({ err }, 'unregistering gateway failed'),
      );
      await client.connection.close();
      await db.end();
    },
  };
}

function buildApp(config: Config, log: FastifyBaseLogger): FastifyInstance {
  const app = Fastify({
    loggerInstance: log,
    bodyLimit: config.gateway.maxBodyBytes,
    // One line per request at info would flood the log; requests are logged at debug below.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: 'x-request-id',
  });
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFoundHandler);
  app.addHook('onResponse', async (request, reply) => {
    request.log.debug(
      { method: request.method, url: request.url, status: reply.statusCode, ms: reply.elapsedTime },
      'request',
    );
  });
  return app;
}
