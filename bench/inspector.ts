/**
 * A process's memory, two ways. Retained, through its inspector (the process runs with
 * `--inspect=127.0.0.1:<port>`): a full garbage collection first, then the heap in use plus
 * memory held outside it (buffers), so that what was allocated and dropped does not count. And
 * resident (VmRSS), as the system sees it.
 */
import { readFile } from 'node:fs/promises';
import WebSocket from 'ws';
import { wsText } from '../src/util/ws-data.js';

export async function retainedBytes(inspectorPort: number): Promise<number> {
  const [target] = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json()) as {
    webSocketDebuggerUrl: string;
  }[];
  if (!target) throw new Error(`no inspector target on port ${inspectorPort}`);
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  try {
    const call = callOver(ws);
    await call('HeapProfiler.collectGarbage');
    const result = (await call('Runtime.evaluate', {
      expression: 'JSON.stringify(process.memoryUsage())',
      returnByValue: true,
    })) as { result: { value: string } };
    const usage = JSON.parse(result.result.value) as { heapUsed: number; external: number };
    return usage.heapUsed + usage.external;
  } finally {
    ws.close();
  }
}

/** One Chrome DevTools Protocol call at a time over `ws`. */
function callOver(ws: WebSocket): (method: string, params?: object) => Promise<unknown> {
  let nextId = 1;
  return (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => reject(new Error(`inspector: ${method} timed out`)), 30_000);
      const onMessage = (data: WebSocket.RawData) => {
        const message = JSON.parse(wsText(data)) as { id?: number; result?: unknown; error?: { message: string } };
        if (message.id !== id) return;
        clearTimeout(timer);
        ws.off('message', onMessage);
        if (message.error) reject(new Error(`inspector: ${method}: ${message.error.message}`));
        else resolve(message.result);
      };
      ws.on('message', onMessage);
      ws.send(JSON.stringify({ id, method, params }));
    });
}

/** A process's resident memory (VmRSS), bytes. */
export async function processRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kib) * 1024;
}
