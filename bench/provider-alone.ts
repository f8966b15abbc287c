import { fork } from 'child_process';
import { Worker, isMainThread, parentPort, workerData } from 'worker_threads';
import { endChild, nextMessage } from './ipc';

/**
 * The provider alone: how fast libfabric itself moves the benchmark's messages between two
 * processes on this machine, with nothing else running: no Node-RED, no stream layer (no
 * credits, chunks, side channel or copies), only the bare endpoint (native/fabric/endpoint.ts).
 *
 * The sender makes each payload as the benchmarks' source node does (test/nodes/seq-source.ts: a
 * fresh Buffer.allocUnsafe filled from a template, a sequence number on top) and posts it without
 * copying (fi_sendv of a 64-byte head and the payload), at most `window` in flight; the receiver
 * keeps `window` buffers posted and posts each again as soon as it completes. Both turn their
 * completion queues without pause. This is the ceiling for rdma out → efa in: the nodes do all of
 * this and more (bench/rdma.ts runs it beside them and reports its ratio to ZeroMQ).
 *
 * The head is 64 bytes, not 8, because of the kernel copy on this machine's CPU (BENCHMARKS.md,
 * RDMA, "the kernel's copy"): a destination 1–15 bytes past its source (modulo 4 KiB) makes
 * process_vm_readv about 5× slower, and an 8-byte head into buffers allocated alike lands there
 * (`--head 8 --payload reused` shows it).
 *
 * `--payload` says where payloads come from: `fresh` (the default, as the source node), `recycled`
 * (a free list: allocated once, refilled from the template for every message) or `reused` (one
 * buffer, never rewritten; the receiver then checks sizes only). The difference between them is
 * what making fresh payloads costs the transport.
 *
 * `--threaded` moves the sender's endpoint to a worker thread: the main thread makes the payloads
 * and hands their addresses over, as a node with fabric progress off the event loop would. (On 2
 * cores that is slower: BENCHMARKS.md.)
 *
 *   node dist/bench/provider-alone.js [--provider shm|tcp] [--count 3000] [--size 1048576] [--window 16] [--reps 3]
 *     [--threaded] [--payload fresh|recycled|reused] [--head 64]
 */

export interface AloneOptions {
  count: number;
  size: number;
  window: number;
  threaded?: boolean;
  payload?: PayloadMode;
  /** Bytes sent ahead of each payload (the receiver's offset of the payload). */
  head?: number;
}

type PayloadMode = 'fresh' | 'recycled' | 'reused';

type Job = Required<AloneOptions> & { role: 'send' | 'recv'; provider: 'shm' | 'tcp' };

/** Where the sender's payloads come from (--payload); `done` takes one back once its send completed. */
function payloads(job: Job): { make(seq: number): Buffer; done(b: Buffer): void } {
  const template = Buffer.alloc(job.size, 0x5a);
  if (job.payload === 'reused') return { make: () => template, done: () => undefined };
  const free: Buffer[] = [];
  return {
    make(seq) {
      const b = free.pop() ?? Buffer.allocUnsafe(job.size);
      template.copy(b, 8, 8);
      b.writeUInt32LE(seq, 0);
      return b;
    },
    done: (b) => (job.payload === 'recycled' ? free.push(b) : undefined),
  };
}

/** A child process: one side, reporting over IPC. */
async function child(job: Job): Promise<void> {
  const { openEndpoint } = await import('../native/fabric/endpoint');
  const reply = (m: object) => process.send!(m);
  const ep = openEndpoint(job.provider, { depth: 4 * job.window + 16, sourceHost: '127.0.0.1' });
  let stop = false;
  // The threaded sender's worker must leave its endpoint first: one ended inside a call crashes.
  let worker: Worker | undefined;
  process.on('message', (m: { exit?: boolean }) => {
    if (!m.exit) return;
    stop = true;
    ep.close();
    if (!worker) process.exit(0);
    // Completions may still be on their way: exit on the worker's own "stopped".
    worker.on('message', (m: unknown) => m === 'stopped' && process.exit(0));
    worker.postMessage({ stop: true });
  });
  // Turns `step` in bursts, yielding to the event loop (IPC) between them.
  const spin = (step: () => boolean) => {
    const burst = () => {
      if (stop) return;
      for (let i = 0; i < 64; i++) if (step()) return;
      setImmediate(burst);
    };
    burst();
  };
  if (job.role === 'recv') {
    for (let i = 0; i < job.window; i++) ep.postRecv(ep.allocBuffer(job.head + job.size), 0);
    reply({ address: ep.address.toString('base64') });
    const seen = new Uint8Array(job.count);
    let got = 0;
    let first = 0;
    let bad = 0;
    spin(() => {
      for (const c of ep.poll()) {
        if (c.kind !== 'recv') continue;
        if (got === 0) first = performance.now();
        // tcp's rendezvous may complete receives out of order: each number must come exactly once.
        const seq = job.payload === 'reused' ? got : c.buffer.buf.readUInt32LE(job.head);
        if (c.len !== job.head + job.size || seq >= job.count || seen[seq]++) bad++;
        got++;
        while (!ep.postRecv(c.buffer, 0)) ep.poll();
      }
      if (got < job.count) return false;
      reply({ done: true, ms: performance.now() - first, bad });
      return true;
    });
    return;
  }
  const { address } = (await new Promise((r) => process.once('message', r))) as { address: string };
  if (job.threaded) {
    ep.close();
    worker = threadedSender(job, address);
    return;
  }
  const peer = ep.insertPeer(Buffer.from(address, 'base64'));
  const heads = Array.from({ length: job.window }, () => ep.allocBuffer(job.head));
  const source = payloads(job);
  // Referenced until their sends complete (the provider reads them in place).
  const inFlight = new Map<number, Buffer>();
  let next = 0;
  let done = 0;
  spin(() => {
    while (next < job.count && heads.length > 0) {
      const payload = source.make(next);
      const head = heads.pop()!;
      if (!ep.postSendv(peer, head, job.head, [payload], next)) {
        heads.push(head);
        source.done(payload);
        break;
      }
      inFlight.set(next, payload);
      next++;
    }
    for (const c of ep.poll()) {
      if (c.kind !== 'send') continue;
      heads.push(c.buffer);
      source.done(inFlight.get(c.tag)!);
      inFlight.delete(c.tag);
      done++;
    }
    return done >= job.count;
  });
}

/** --threaded: payloads made here, posted by a worker thread that owns the endpoint. */
function threadedSender(job: Job, address: string): Worker {
  const worker = new Worker(__filename, { workerData: { job, address } });
  const source = payloads(job);
  const inFlight = new Map<number, Buffer>();
  let next = 0;
  const make = () => {
    while (next < job.count && inFlight.size < job.window) {
      const payload = source.make(next);
      inFlight.set(next, payload);
      worker.postMessage({ seq: next++, addr: koffiAddress(payload) });
    }
  };
  worker.on('message', (done: number[] | 'stopped') => {
    if (done === 'stopped') return;
    for (const seq of done) {
      source.done(inFlight.get(seq)!);
      inFlight.delete(seq);
    }
    make();
  });
  make();
  return worker;
}

// eslint-disable-next-line @typescript-eslint/no-var-requires
const koffiAddress = (b: Buffer): bigint => require('koffi').address(b) as bigint;

/** The worker of --threaded: owns the sender's endpoint, posts what the main thread made. */
async function fabricWorker(): Promise<void> {
  const { openEndpoint } = await import('../native/fabric/endpoint');
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const koffi = require('koffi') as typeof import('koffi');
  const { job, address } = workerData as { job: Job; address: string };
  const ep = openEndpoint(job.provider, { depth: 4 * job.window + 16, sourceHost: '127.0.0.1' });
  const peer = ep.insertPeer(Buffer.from(address, 'base64'));
  const heads = Array.from({ length: job.window }, () => ep.allocBuffer(job.head));
  const queue: Array<{ seq: number; addr: bigint }> = [];
  let stop = false;
  parentPort!.on('message', (m: { seq: number; addr: bigint; stop?: boolean }) => {
    if (!m.stop) return queue.push(m);
    stop = true;
    ep.close();
    parentPort!.postMessage('stopped');
  });
  const burst = () => {
    if (stop) return;
    const done: number[] = [];
    for (let i = 0; i < 64; i++) {
      while (queue.length > 0 && heads.length > 0) {
        const head = heads.pop()!;
        const payload = Buffer.from(koffi.view(queue[0].addr, job.size));
        if (!ep.postSendv(peer, head, job.head, [payload], queue[0].seq)) {
          heads.push(head);
          break;
        }
        queue.shift();
      }
      for (const c of ep.poll()) {
        if (c.kind !== 'send') continue;
        heads.push(c.buffer);
        done.push(c.tag);
      }
    }
    if (done.length) parentPort!.postMessage(done);
    setImmediate(burst);
  };
  burst();
}

/** MB/s (10^6 bytes of payload per second, the receiver's clock) of one run over `provider`. */
export async function providerAlone(provider: 'shm' | 'tcp', o: AloneOptions): Promise<number> {
  const job = { provider, count: o.count, size: o.size, window: o.window, threaded: !!o.threaded, payload: o.payload ?? 'fresh', head: o.head ?? 64 };
  const recv = fork(__filename, ['--child', JSON.stringify({ ...job, role: 'recv' })]);
  const send = fork(__filename, ['--child', JSON.stringify({ ...job, role: 'send' })]);
  const what = `${provider} provider alone (${job.payload} payloads${o.threaded ? ', threaded' : ''})`;
  try {
    const { address } = await nextMessage(recv, 'address', what);
    send.send({ address });
    const r = await nextMessage(recv, 'done', what);
    if (r.bad) throw new Error(`${what}: ${r.bad} messages duplicated, missing or of the wrong size`);
    return (o.count * o.size) / 1e6 / ((r.ms as number) / 1000);
  } finally {
    await Promise.all([endChild(send), endChild(recv)]);
  }
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--child');
  if (i >= 0) return child(JSON.parse(process.argv[i + 1]) as Job);
  const o = { count: 3000, size: 1 << 20, window: 16, reps: 3, providers: ['shm', 'tcp'] as Array<'shm' | 'tcp'>, threaded: false, payload: 'fresh' as PayloadMode, head: 64 };
  const argv = process.argv.slice(2);
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    if (a === '--threaded') {
      o.threaded = true;
      continue;
    }
    const v = argv[++k];
    if (a === '--provider') o.providers = [v as 'shm' | 'tcp'];
    else if (a === '--count') o.count = Number(v);
    else if (a === '--size') o.size = Number(v);
    else if (a === '--window') o.window = Number(v);
    else if (a === '--reps') o.reps = Number(v);
    else if (a === '--payload' && ['fresh', 'recycled', 'reused'].includes(v)) o.payload = v as PayloadMode;
    else if (a === '--head') o.head = Math.max(8, Number(v));
    else throw new Error(`unknown option ${a}`);
  }
  console.log(`libfabric alone, ${o.payload} payloads, head ${o.head} B${o.threaded ? ', sender threaded' : ''}: ${o.count} × ${o.size} B, window ${o.window}, ${o.reps} rep(s), MB/s (receiver's clock)`);
  for (let rep = 1; rep <= o.reps; rep++) {
    for (const p of o.providers) console.log(`  rep ${rep} ${p}  ${(await providerAlone(p, o)).toFixed(0)} MB/s`);
  }
}

if (!isMainThread) void fabricWorker();
else if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
