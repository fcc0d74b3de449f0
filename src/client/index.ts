/** The client SDK: what an application needs to talk to its actors through Dormouse's gateways. */
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_PING_INTERVAL_MS,
  DEFAULT_RESUME_WITHIN_MS,
  ResumableSocket,
  SessionClosedError,
  type ResumableSocketEvents,
  type ResumableSocketOptions,
} from './resumable-socket.js';
export { ClientCloseCode } from '../protocol/client-close-codes.js';
