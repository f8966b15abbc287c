import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { openQuicStream } from '../native/quic/stream';
import { loadIdentity } from '../native/quic/pki';

/**
 * One side of a QUIC benchmark pair, forked by bench/quic.ts; talks to the parent over IPC.
 *   stock-recv / stock-send  @matrixai/quic's public classes (QUICServer, QUICClient, QUICStream):
 *                            raw bytes over one stream in writes of `size` bytes
 *   lean-pull / lean-push    spawn-red's QUIC stream (native/quic): spawn-encoded messages of
 *                            `size` bytes, batched as over ZeroMQ
 * argv: mode size count port tlsDir
 */

const [mode, sizeText, countText, portText, tlsDir] = process.argv.slice(2);
const size = Number(sizeText);
const count = Number(countText);
const port = Number(portText);
const send = (m: object) => process.send!(m);

async function stock(): Promise<void> {
  const pkgDir = path.dirname(require.resolve('@matrixai/quic/package.json'));
  // ESM only: required by path (Node >= 20.19 loads ES modules through require).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const quic = require(path.join(pkgDir, 'dist', 'index.js'));
  const loggerDir = path.dirname(require.resolve('@matrixai/logger/package.json', { paths: [pkgDir] }));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { default: Logger, LogLevel } = require(path.join(loggerDir, 'dist', 'index.js'));
  const logger = new Logger('bench', LogLevel.WARN);
  const id = loadIdentity(tlsDir);
  const total = size * count;
  if (mode === 'stock-recv') {
    const key = crypto.randomBytes(32);
    const server = new quic.QUICServer({
      crypto: {
        key: key.buffer.slice(key.byteOffset, key.byteOffset + 32),
        ops: {
          sign: async (k: ArrayBuffer, data: ArrayBuffer) => {
            const h = crypto.createHmac('sha256', Buffer.from(k)).update(Buffer.from(data)).digest();
            return h.buffer.slice(h.byteOffset, h.byteOffset + h.length);
          },
          verify: async (k: ArrayBuffer, data: ArrayBuffer, sig: ArrayBuffer) =>
            crypto.createHmac('sha256', Buffer.from(k)).update(Buffer.from(data)).digest().equals(Buffer.from(sig)),
        },
      },
      config: { key: id.keyPem, cert: id.certPem, verifyPeer: false },
      logger,
    });
    server.addEventListener('EventQUICServerConnection', (ev: { detail: { addEventListener: (n: string, f: (e: { detail: { readable: ReadableStream<Uint8Array> } }) => void) => void } }) => {
      ev.detail.addEventListener('EventQUICConnectionStream', async (se) => {
        let got = 0;
        let first = 0;
        for await (const chunk of se.detail.readable as unknown as AsyncIterable<Uint8Array>) {
          if (!first) first = Date.now();
          got += chunk.byteLength;
          if (got >= total) break;
        }
        send({ event: 'done', bytes: got, ms: Date.now() - first, messages: count });
      });
    });
    await server.start({ host: '127.0.0.1', port: 0 });
    send({ event: 'ready', port: server.port });
  } else {
    const client = await quic.QUICClient.createQUICClient({
      host: '127.0.0.1',
      port,
      localHost: '127.0.0.1',
      crypto: { ops: { randomBytes: async (data: ArrayBuffer) => void crypto.randomFillSync(new Uint8Array(data)) } },
      config: { verifyPeer: false },
      logger,
    });
    const stream = client.connection.newStream();
    const writer = (stream.writable as WritableStream<Uint8Array>).getWriter();
    const chunk = Buffer.alloc(size, 0x5a);
    for (let i = 0; i < count; i++) await writer.write(chunk);
    send({ event: 'sent' });
  }
}

async function lean(): Promise<void> {
  const common = {
    format: 'spawn' as const,
    highWater: 1000,
    queueLimit: 100_000,
    maxMessageSize: 0,
    reconnectMs: 100,
    batch: true,
    tlsDir,
  };
  if (mode === 'lean-pull') {
    let got = 0;
    let bytes = 0;
    let first = 0;
    const s = openQuicStream(
      { ...common, pattern: 'pull', bind: [`quic://127.0.0.1:${port}`], connect: [] },
      {
        message: (m) => {
          if (!first) first = Date.now();
          got++;
          bytes += (m.payload as Buffer).length;
          if (got === count) send({ event: 'done', bytes, ms: Date.now() - first, messages: got });
        },
        status: () => undefined,
        problem: (e) => console.error(e.message),
      },
    );
    const until = async () => {
      while (s.endpoints.length === 0) await new Promise((r) => setTimeout(r, 5));
    };
    await until();
    send({ event: 'ready', port: s.endpoints[0].port, buffers: s.endpoints[0].bufferSizes() });
  } else {
    const s = openQuicStream(
      { ...common, pattern: 'push', bind: [], connect: [`quic://127.0.0.1:${port}`] },
      { message: () => undefined, status: () => undefined, problem: (e) => console.error(e.message) },
    );
    diag.push(s);
    const template = Buffer.alloc(size, 0x5a);
    let next = 0;
    let inFlight = 0;
    // A window of 1000 messages not yet taken by the transport, like the seq-source node's.
    const pump = () => {
      while (next < count && inFlight < 1000) {
        next++;
        inFlight++;
        s.send(Buffer.from(template), undefined, undefined, (e) => {
          if (e) console.error(e.message);
          inFlight--;
          if (inFlight < 500) setImmediate(pump);
        });
      }
    };
    pump();
  }
}

process.on('message', (m: { event?: string }) => {
  if (m.event === 'exit') {
    if (process.env.QUIC_DIAG) for (const s of diag) for (const ep of s.endpoints) for (const c of ep.connections) console.error(mode, ep.packetsSent, ep.packetsReceived, JSON.stringify(c.stats()));
    process.exit(0);
  }
});
const diag: ReturnType<typeof openQuicStream>[] = [];
const dir = tlsDir || fs.mkdtempSync(path.join(os.tmpdir(), 'bench-quic-'));
void dir;
(mode.startsWith('stock') ? stock() : lean()).catch((e) => {
  console.error(e);
  process.exit(1);
});
