/**
 * A runner's hello as a test writes it by hand, to speak the protocol raw (refusals, takeovers,
 * bad frames) where the SDK would not: one hosting nothing, in the default pool, unless told.
 */
import { randomUUID } from 'node:crypto';
import { SUPPORTED_PROTOCOL_VERSIONS, type RunnerToGateway } from '../../src/protocol/runner-protocol.js';

export type Hello = Extract<RunnerToGateway, { type: 'hello' }>;

export function rawHello(fields: Partial<Hello> = {}): Hello {
  return {
    type: 'hello',
    protocolVersions: SUPPORTED_PROTOCOL_VERSIONS,
    runnerId: randomUUID(),
    name: 'raw',
    pool: 'default',
    capacity: 1,
    actorNames: ['unhosted'],
    actors: [],
    ...fields,
  };
}

/** The gateway's runner endpoint, as a WebSocket URL. */
export function runnerConnectUrl(gatewayUrl: string): string {
  return `${gatewayUrl.replace(/^http/, 'ws')}/runners/connect`;
}
