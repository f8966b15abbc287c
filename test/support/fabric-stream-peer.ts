/**
 * A child process for the fabric stream tests (test/fabric-stream.test.ts): one output side
 * (openFabricOut) or one input side (openFabricIn) driven over IPC, so native crashes fail the
 * test instead of killing mocha.
 *
 *   {role:'out', provider, port, count, size, tag, window}  → {ready} when listening
 *       {go}   → sends `count` messages of `size` bytes (seq, tag, then pattern bytes), at most
 *                `window` unfinished → {sent, failed, hash, firstError}
 *   {role:'in', provider, ports, expect, credits?, chunkBytes?} → {ready} once every sender is connected
 *       → {done, senders} after `expect` messages; without `expect`, {tally, senders} 20 ms after
 *         messages arrive (at most every 20 ms)
 *   {close} → closes the stream → {closed}
 *
 * Payload byte i (i ≥ 8) of message seq is (seq * 31 + i) & 0xff: cheap to make, and checksummed
 * on both ends so any corruption, loss or reordering shows.
 */
import crypto from 'crypto';
import { openFabricIn, openFabricOut, FabricStream } from '../../native/fabric/stream';
import { Provider } from '../../native/fabric/endpoint';

interface Job {
  role: 'out' | 'in';
  provider: Provider;
  port?: number;
  ports?: number[];
  count?: number;
  size?: number;
  tag?: number;
  window?: number;
  expect?: number;
  peers?: number;
  credits?: number;
  chunkBytes?: number;
  maxMessageSize?: number;
  /** in: compare every payload with the one expected (corrupt counts differences). */
  verify?: boolean;
  /** in: report the sequence numbers seen, per sender. */
  keepSeqs?: boolean;
  /** in: SIGKILL itself right after this many messages (a receiver crashing mid-stream). */
  crashAfter?: number;
}

const reply = (m: object) => process.send!(m);
process.on('disconnect', () => process.exit(0));

/** 256 rows of pattern bytes: row k is message seq ≡ k (mod 256). */
const PATTERN_LEN = 1 << 20;
const rows: Buffer[] = [];
function pattern(seq: number): Buffer {
  const k = seq & 0xff;
  if (!rows[k]) {
    const b = Buffer.allocUnsafe(PATTERN_LEN);
    for (let i = 0; i < PATTERN_LEN; i++) b[i] = (k * 31 + i) & 0xff;
    rows[k] = b;
  }
  return rows[k];
}

export function makePayload(seq: number, tag: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  if (size >= 8) {
    b.writeUInt32LE(seq, 0);
    b.writeUInt32LE(tag, 4);
  }
  if (size > PATTERN_LEN) throw new Error(`payloads up to ${PATTERN_LEN} bytes`);
  if (size > 8) pattern(seq).copy(b, 8, 8, size);
  return b;
}

let stream: FabricStream | undefined;
const problems: string[] = [];

process.once('message', (job: Job) => {
  try {
    if (job.role === 'out') runOut(job);
    else runIn(job);
  } catch (e) {
    reply({ error: (e as Error).message, code: (e as { code?: number }).code });
  }
  process.on('message', async (m: { close?: boolean; go?: boolean }) => {
    if (m.close) {
      const left = await stream?.close(2000);
      reply({ closed: true, left, problems });
    }
  });
});

function runOut(job: Job): void {
  let readySent = false;
  const s = openFabricOut(
    {
      provider: job.provider,
      format: 'spawn',
      maxMessageSize: job.maxMessageSize ?? 0,
      host: '127.0.0.1',
      port: job.port!,
      highWater: 1_000_000,
      queueLimit: 10_000_000,
      batch: true,
      chunkBytes: job.chunkBytes,
    },
    {
      message: () => undefined,
      status: (st) => {
        if (!readySent && st.text.includes('waiting for receivers')) {
          readySent = true;
          reply({ ready: true, provider: s.providerName });
        }
      },
      problem: (e) => problems.push(`${e.code}: ${e.message}`),
    },
  );
  stream = s;
  process.on('message', (m: { go?: boolean }) => {
    if (!m.go) return;
    const hash = crypto.createHash('sha256');
    const count = job.count!;
    const window = job.window ?? 64;
    let next = 0;
    let finished = 0;
    let failed = 0;
    let firstError: string | undefined;
    const start = performance.now();
    const pump = () => {
      while (next < count && next - finished < window) {
        const payload = makePayload(next, job.tag ?? 0, job.size!);
        hash.update(payload);
        next++;
        s.send(payload, undefined, undefined, (err) => {
          finished++;
          if (err) {
            failed++;
            firstError ??= `${err.code}: ${err.message}`;
          }
          if (finished === count) reply({ sent: count, failed, firstError, hash: hash.digest('hex'), ms: performance.now() - start, problems });
          else pump();
        });
      }
    };
    pump();
  });
}

function runIn(job: Job): void {
  type Tally = { count: number; hash: crypto.Hash; last: number; outOfOrder: number; corrupt: number; first: number; seqs: number[] };
  const bySender = new Map<number, Tally>();
  let received = 0;
  let readySent = false;
  let wrongType = 0;
  const want = job.expect ?? 0;
  let start = 0;
  let tallyTimer: NodeJS.Timeout | undefined;
  const tally = () => {
    const senders: Record<number, object> = {};
    for (const [t, x] of bySender) {
      senders[t] = { count: x.count, hash: x.hash.copy().digest('hex'), outOfOrder: x.outOfOrder, corrupt: x.corrupt, first: x.first, last: x.last, ...(job.keepSeqs ? { seqs: x.seqs } : {}) };
    }
    return { received, wrongType, senders, ms: performance.now() - start, problems };
  };
  const s = openFabricIn(
    {
      provider: job.provider,
      format: 'spawn',
      maxMessageSize: job.maxMessageSize ?? 0,
      connect: job.ports!.map((port) => ({ host: '127.0.0.1', port })),
      reconnectMs: 50,
      credits: job.credits,
      chunkBytes: job.chunkBytes,
    },
    {
      message: (m) => {
        const b = m.payload as Buffer;
        if (!Buffer.isBuffer(b) || b.length < 8) {
          wrongType++;
          return;
        }
        if (received === 0) start = performance.now();
        const seq = b.readUInt32LE(0);
        const tag = b.readUInt32LE(4);
        let st = bySender.get(tag);
        if (!st) bySender.set(tag, (st = { count: 0, hash: crypto.createHash('sha256'), last: -1, outOfOrder: 0, corrupt: 0, first: seq, seqs: [] }));
        if (seq <= st.last) st.outOfOrder++;
        st.last = seq;
        st.count++;
        st.hash.update(b);
        if (job.verify && !b.equals(makePayload(seq, tag, b.length))) st.corrupt++;
        if (job.keepSeqs) st.seqs.push(seq);
        received++;
        if (job.crashAfter && received === job.crashAfter) process.kill(process.pid, 'SIGKILL');
        if (want && received === want) reply({ done: true, ...tally() });
        else if (!want && !tallyTimer) {
          tallyTimer = setTimeout(() => {
            tallyTimer = undefined;
            reply({ tally: true, ...tally() });
          }, 20);
        }
      },
      status: (st) => {
        if (!readySent && st.peers >= (job.peers ?? job.ports!.length)) {
          readySent = true;
          reply({ ready: true, provider: s.providerName });
        }
      },
      problem: (e) => {
        problems.push(`${e.code}: ${e.message}`);
        reply({ problem: `${e.code}: ${e.message}` });
      },
    },
  );
  stream = s;
}
