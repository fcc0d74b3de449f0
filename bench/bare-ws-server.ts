/**
 * The memory baseline of `hibernating-sockets`: a plain `ws` server that accepts WebSockets and
 * holds them, nothing else. Listens on BENCH_WS_PORT; logs `ready` (the process contract).
 */
import { WebSocketServer } from 'ws';

const port = Number(process.env.BENCH_WS_PORT);
const held: unknown[] = [];
const server = new WebSocketServer({ host: '127.0.0.1', port });
server.on('connection', (ws) => held.push(ws));
server.on('listening', () => console.log(JSON.stringify({ level: 30, msg: 'ready', port })));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
