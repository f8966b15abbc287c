/**
 * A child process for the fabric tests: every native call runs here, so a wrong offset shows up
 * as a child killed by SIGSEGV (a failed test naming the signal), never a dead test runner.
 * Driven over IPC by test/fabric-endpoint.test.ts:
 *   {role: 'open', provider}                         → {address} | {error}
 *   {role: 'recv'|'send', provider, count, size, depth} → {address}, then parent sends {peer},
 *                                                      then → {done, hash, ms, ...} | {error}
 */
import crypto from 'crypto';
import { openEndpoint, Endpoint, NativeBuffer, Provider } from '../../native/fabric/endpoint';

interface Job {
  role: 'open' | 'recv' | 'send';
  provider: Provider;
  count: number;
  size: number;
  depth: number;
}

const reply = (m: object) => process.send!(m);
const fail = (e: unknown) => reply({ error: e instanceof Error ? e.message : String(e), code: (e as { code?: number }).code });

// The test runner going away (or ending the test) ends this peer, whatever it is doing.
process.on('disconnect', () => process.exit(0));

process.once('message', (job: Job) => {
  let ep: Endpoint | undefined;
  try {
    // Loopback only: the tcp provider would otherwise take the first interface.
    ep = openEndpoint(job.provider, { depth: job.depth * 2, sourceHost: '127.0.0.1' });
    reply({ address: ep.address.toString('base64'), providerName: ep.providerName, mrLocal: ep.mrLocal });
    if (job.role === 'open') return ep.close();
  } catch (e) {
    ep?.close();
    return fail(e);
  }
  process.once('message', ({ peer }: { peer: string }) => {
    try {
      const fiAddr = ep!.insertPeer(Buffer.from(peer, 'base64'));
      const result = job.role === 'send' ? send(ep!, fiAddr, job) : recv(ep!, job);
      ep!.close();
      reply({ done: true, ...result });
    } catch (e) {
      fail(e);
    }
  });
});

const DEADLINE_MS = 30_000;

/** Pre-posts `depth` receives, re-posting each as it completes; hashes payloads in order. */
function recv(ep: Endpoint, job: Job) {
  const hash = crypto.createHash('sha256');
  const bufs: NativeBuffer[] = Array.from({ length: job.depth }, () => ep.allocBuffer(job.size));
  bufs.forEach((b, i) => post(() => ep.postRecv(b, i), ep));
  let posted = bufs.length;
  let received = 0;
  let outOfOrder = 0;
  let wrongSize = 0;
  let first = 0;
  const start = Date.now();
  while (received < job.count) {
    if (Date.now() - start > DEADLINE_MS) throw new Error(`recv: only ${received} of ${job.count} messages after ${DEADLINE_MS} ms`);
    for (const c of ep.poll()) {
      if (c.kind !== 'recv') continue;
      if (!first) first = performance.now();
      if (c.len !== job.size) wrongSize++;
      if (c.buffer.buf.readUInt32LE(0) !== received) outOfOrder++;
      hash.update(c.buffer.buf.subarray(0, c.len));
      received++;
      if (posted < job.count) {
        post(() => ep.postRecv(c.buffer, c.tag), ep);
        posted++;
      }
    }
  }
  const ms = performance.now() - first;
  bufs.forEach((b) => ep.releaseBuffer(b));
  return { received, outOfOrder, wrongSize, hash: hash.digest('hex'), ms };
}

/** Sends `count` messages of `size` random bytes (sequence number first), `depth` in flight. */
function send(ep: Endpoint, peer: bigint, job: Job) {
  const hash = crypto.createHash('sha256');
  const idle: NativeBuffer[] = Array.from({ length: job.depth }, () => ep.allocBuffer(job.size));
  const all = [...idle];
  let sent = 0;
  let completed = 0;
  let eagain = 0;
  const start = performance.now();
  while (completed < job.count) {
    if (performance.now() - start > DEADLINE_MS) throw new Error(`send: only ${completed} of ${job.count} sends completed after ${DEADLINE_MS} ms`);
    while (sent < job.count && idle.length > 0) {
      const b = idle[idle.length - 1];
      if (b.buf.readUInt32LE(0) !== sent || sent === 0) {
        crypto.randomFillSync(b.buf);
        b.buf.writeUInt32LE(sent, 0);
      }
      // -FI_EAGAIN (e.g. tcp still connecting): progress, then retry with the same bytes.
      if (!ep.postSend(peer, b, job.size, sent)) {
        eagain++;
        break;
      }
      hash.update(b.buf);
      idle.pop();
      sent++;
    }
    for (const c of ep.poll()) {
      if (c.kind !== 'send') continue;
      completed++;
      idle.push(c.buffer);
    }
  }
  const ms = performance.now() - start;
  all.forEach((b) => ep.releaseBuffer(b));
  return { sent, eagain, hash: hash.digest('hex'), ms };
}

function post(fn: () => boolean, ep: Endpoint): void {
  const start = Date.now();
  while (!fn()) {
    ep.poll();
    if (Date.now() - start > DEADLINE_MS) throw new Error('post: provider kept answering -FI_EAGAIN');
  }
}
