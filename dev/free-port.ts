/** TCP port helpers for the dev stack and the tests, which run many servers on one machine. */
import { createServer } from 'node:net';

const LOOPBACK = '127.0.0.1';

/**
 * A port that was free a moment ago: the OS picks one for a throwaway listener. Another process
 * could take it before the caller binds it; on a test machine that race is rare enough.
 */
export async function freePort(host: string = LOOPBACK): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('could not read the port of a probe listener');
  return address.port;
}

/** Whether `port` can be bound on `host` right now. */
export async function isPortFree(port: number, host: string = LOOPBACK): Promise<boolean> {
  const server = createServer();
  const bound = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, host, () => resolve(true));
  });
  if (bound) await new Promise<void>((resolve) => server.close(() => resolve()));
  return bound;
}

/** `preferred` if it is free, else a free port; `fellBack` tells the caller to say so. */
export async function preferredOrFreePort(
  preferred: number,
  host: string = LOOPBACK,
): Promise<{ port: number; fellBack: boolean }> {
  if (await isPortFree(preferred, host)) return { port: preferred, fellBack: false };
  return { port: await freePort(host), fellBack: true };
}
