import { strict as assert } from 'assert';
import { WireMessage } from '../native/codec';
import { StreamError } from '../native/errors';
import { openZmqStream, Pattern, ZmqStream, ZmqStreamConfig } from '../native/zmq';
import { ConfigError, streamConfig } from '../nodes/common/config';
import { freePort } from './support/ports';

/** Exactly-once delivery (native/delivery/) over real loopback ZeroMQ sockets. */

const ep = (port: number) => `tcp://127.0.0.1:${port}`;

function cfg(pattern: Pattern, over: Partial<ZmqStreamConfig>): ZmqStreamConfig {
  return {
    pattern,
    format: 'spawn',
    bind: [],
    connect: [],
    highWater: 1000,
    queueLimit: 1_000_000,
    maxMessageSize: 0,
    reconnectMs: 50,
    batch: true,
    noPeerMs: 1500,
    delivery: 'exactly-once',
    ...over,
  };
}

interface Sink {
  stream: ZmqStream;
  got: Array<{ m: WireMessage; key: Buffer | undefined }>;
  problems: StreamError[];
  /** Resolves when `n` messages arrived in all. */
  until(n: number, ms?: number): Promise<void>;
}

function open(c: ZmqStreamConfig): Sink {
  const got: Sink['got'] = [];
  const problems: StreamError[] = [];
  let wake = () => undefined as void;
  const stream = openZmqStream(c, {
    message: (m, key) => {
      got.push({ m, key });
      wake();
    },
    status: (s) => process.env.DEBUG_DELIVERY && console.log(c.pattern, s.text),
    problem: (e) => problems.push(e),
  });
  return {
    stream,
    got,
    problems,
    until(n, ms = 20_000) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${got.length} of ${n} messages after ${ms} ms; problems: ${problems.map((p) => p.message).join('; ')}`)), ms);
        const check = () => {
          if (got.length >= n) {
            clearTimeout(t);
            wake = () => undefined;
            resolve();
          }
        };
        wake = check;
        check();
      });
    },
  };
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const seqs = (s: Sink) => s.got.map((g) => (g.m.payload as Buffer).readUInt32LE(0));

function payload(seq: number, size: number): Buffer {
  const b = Buffer.alloc(Math.max(8, size), 0x5a);
  b.writeUInt32LE(seq, 0);
  return b;
}

/** Sends 0..n-1 through `s`, respecting done() with at most `window` outstanding; resolves when all were taken. */
function pump(s: ZmqStream, from: number, n: number, size: number, window = 2000): Promise<void> {
  return new Promise((resolve, reject) => {
    let next = from;
    let done = from;
    const go = () => {
      while (next < from + n && next - done < window) {
        s.send(payload(next++, size), undefined, undefined, (err) => {
          if (err) return reject(err);
          if (++done === from + n) resolve();
          else go();
        });
      }
    };
    go();
  });
}

describe('exactly-once delivery (ZeroMQ)', function () {
  this.timeout(60_000);
  const open_: ZmqStream[] = [];
  const track = (s: Sink) => (open_.push(s.stream), s);
  afterEach(async () => {
    await Promise.all(open_.splice(0).map((s) => s.close(0)));
  });

  it('push → pull: small and detached large messages arrive once, in order', async function () {
    const port = await freePort();
    const push = track(open(cfg('push', { bind: [ep(port)] })));
    const pull = track(open(cfg('pull', { connect: [ep(port)] })));
    await pump(push.stream, 0, 20_000, 100);
    await pump(push.stream, 20_000, 300, 64 * 1024); // several detached payloads per frame set
    await pull.until(20_300);
    assert.deepEqual(seqs(pull), Array.from({ length: 20_300 }, (_, i) => i));
    assert.equal((pull.got[20_100].m.payload as Buffer).length, 64 * 1024);
    assert.deepEqual(push.problems.concat(pull.problems), []);
  });

  it('a restarted receiver gets what its predecessor did not acknowledge; nothing is lost', async function () {
    const port = await freePort();
    const push = track(open(cfg('push', { bind: [ep(port)], noPeerMs: 800 })));
    const first = open(cfg('pull', { connect: [ep(port)] }));
    void pump(push.stream, 0, 5000, 100, 200);
    await first.until(1000);
    await first.stream.close(0); // gone without a goodbye: its acknowledgements may be owed
    const firstSeen = seqs(first);
    const last = firstSeen[firstSeen.length - 1];
    const second = track(open(cfg('pull', { connect: [ep(port)] })));
    await waitFor(() => second.got.length > 0 && seqs(second)[second.got.length - 1] === 4999, 20_000);
    const secondSeen = seqs(second);
    // Together they saw everything; the successor's share is contiguous, in order, and ends at 4999.
    const union = new Set([...firstSeen, ...secondSeen]);
    assert.equal(union.size, 5000, `missing: ${[...Array(5000).keys()].filter((i) => !union.has(i)).slice(0, 10)}`);
    assert.deepEqual(secondSeen, Array.from({ length: secondSeen.length }, (_, i) => secondSeen[0] + i));
    assert.equal(secondSeen[secondSeen.length - 1], 4999);
    assert.ok(secondSeen[0] <= last + 1);
  });

  it('a receiver survives a sender restart: the new sender\'s sequence 0 is not taken for a duplicate', async function () {
    const port = await freePort();
    const pull = track(open(cfg('pull', { bind: [ep(port)], noPeerMs: 800 })));
    const a = open(cfg('push', { connect: [ep(port)] }));
    await pump(a.stream, 0, 3000, 100);
    await pull.until(3000);
    assert.equal(await a.stream.close(5000), 0);
    const b = track(open(cfg('push', { connect: [ep(port)] })));
    await pump(b.stream, 0, 3000, 100);
    await pull.until(6000);
    const s = seqs(pull);
    assert.deepEqual(s.slice(3000), Array.from({ length: 3000 }, (_, i) => i));
  });

  it('round-robin over two receivers, each in order, all once', async function () {
    const port = await freePort();
    const push = track(open(cfg('push', { bind: [ep(port)], batch: false })));
    const p1 = track(open(cfg('pull', { connect: [ep(port)] })));
    const p2 = track(open(cfg('pull', { connect: [ep(port)] })));
    while (push.stream.peers < 2) await new Promise((r) => setTimeout(r, 20));
    await pump(push.stream, 0, 4000, 100);
    await new Promise<void>((resolve, reject) => {
      const t = setInterval(() => {
        if (p1.got.length + p2.got.length >= 4000) {
          clearInterval(t);
          resolve();
        }
      }, 20);
      setTimeout(() => (clearInterval(t), reject(new Error('not all arrived'))), 20_000);
    });
    const a = seqs(p1);
    const b = seqs(p2);
    assert.ok(a.length > 0 && b.length > 0, `both receive: ${a.length} and ${b.length}`);
    for (const s of [a, b]) assert.ok(s.every((v, i) => i === 0 || v > s[i - 1]), 'in order');
    assert.equal(new Set([...a, ...b]).size, 4000);
    assert.equal(a.length + b.length, 4000, 'none delivered to both');
  });

  it('router/dealer: requests and replies by identity, exactly once', async function () {
    const port = await freePort();
    const router = track(open(cfg('router', { bind: [ep(port)] })));
    const dealer = track(open(cfg('dealer', { connect: [ep(port)], identity: 'worker-1' })));
    await pump(dealer.stream, 0, 1000, 50);
    await router.until(1000);
    assert.equal(router.got[0].key!.toString(), 'worker-1');
    for (const g of router.got) router.stream.send(g.m.payload, g.key, undefined, () => undefined);
    await dealer.until(1000);
    assert.deepEqual(seqs(dealer), Array.from({ length: 1000 }, (_, i) => i));
  });

  it('the window holds back done() while no receiver acknowledges (backpressure, bounded memory)', async function () {
    const port = await freePort();
    const push = track(open(cfg('push', { bind: [ep(port)], highWater: 10, batch: false })));
    // No receiver: only the first frame set may be taken... and none while no peer is live.
    let done = 0;
    for (let i = 0; i < 50; i++) push.stream.send(payload(i, 100), undefined, undefined, () => done++);
    const pull = track(open(cfg('pull', { connect: [ep(port)] })));
    await pull.until(50);
    assert.equal(done, 50);
    assert.deepEqual(seqs(pull), Array.from({ length: 50 }, (_, i) => i));
  });

  it('configuration: exactly-once only where a return path fits the pattern', function () {
    const def = { id: 'n', type: 'x', z: 't', name: '', endpoints: 'tcp://127.0.0.1:5555' };
    assert.equal(streamConfig('push', { ...def, delivery: 'exactly-once' }).delivery, 'exactly-once');
    assert.equal(streamConfig('pull', def).delivery, 'at-most-once');
    assert.throws(() => streamConfig('pub', { ...def, delivery: 'exactly-once' }), (e: Error) => e instanceof ConfigError && /pub\/sub delivers at most once/.test(e.message));
    assert.throws(() => streamConfig('pull', { ...def, delivery: 'twice' as never }), /delivery "twice" must be/);
  });
});

describe('validate: both ends of a stream agree on delivery and encryption', function () {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { validateFlow, formatProblem } = require('../launcher/validate') as typeof import('../launcher/validate');
  const flow = (push: Record<string, unknown>, pull: Record<string, unknown>) => [
    { id: 'tP', type: 'tab', label: 'producer' },
    { id: 'sP', type: 'spawn-stage', z: 'tP' },
    { id: 'push1', type: 'spawn-push', z: 'tP', port: 5555, ...push },
    { id: 'tC', type: 'tab', label: 'consumer' },
    { id: 'sC', type: 'spawn-stage', z: 'tC' },
    { id: 'p1', type: 'spawn-pull', z: 'tC', name: 'from producer', sourceStage: 'producer', ...pull },
  ];
  const says = (f: unknown[]) => validateFlow(f).map(formatProblem);

  it('accepts matching ends', function () {
    assert.deepEqual(says(flow({ delivery: 'exactly-once', encryption: 'curve' }, { delivery: 'exactly-once', encryption: 'curve' })), []);
    assert.deepEqual(says(flow({}, { delivery: 'at-most-once', encryption: 'none' })), []);
  });

  it('names the node and field when the ends differ', function () {
    const out = says(flow({ delivery: 'exactly-once' }, { encryption: 'curve' }));
    assert.equal(out.length, 2, out.join('\n'));
    assert.match(out[0], /pull "from producer".*delivery.*is at-most-once but reads from push.*which is exactly-once/);
    assert.match(out[1], /encryption.*is curve but reads from push.*which is none/);
  });

  it('rdma out and efa in: the ends agree on delivery (exactly-once runs over RDMA)', function () {
    const rdma = (out: Record<string, unknown>, inn: Record<string, unknown>) =>
      flow({}, {}).map((n) => (n.id === 'push1' ? { ...n, type: 'spawn-rdma-out', port: 7500, ...out } : n.id === 'p1' ? { ...n, type: 'spawn-efa-in', name: 'from producer', ...inn } : n));
    assert.deepEqual(says(rdma({ delivery: 'exactly-once' }, { delivery: 'exactly-once' })), []);
    assert.deepEqual(says(rdma({ delivery: 'exactly-once', provider: 'tcp' }, { delivery: 'exactly-once', provider: 'tcp' })), []);
    const out = says(rdma({ delivery: 'exactly-once' }, {}));
    assert.deepEqual(out.length, 1, out.join('\n'));
    assert.match(out[0], /efa in "from producer".*delivery: is at-most-once but reads from rdma out push1 of stage "producer", which is exactly-once: both ends of a stream must match/);
  });

  it('accepts exactly-once over QUIC and auto, and names a QUIC end that differs', function () {
    for (const transport of ['quic', 'auto']) {
      assert.deepEqual(says(flow({ delivery: 'exactly-once', transport }, { delivery: 'exactly-once', transport })), []);
    }
    const out = says(flow({ delivery: 'exactly-once', transport: 'quic' }, { transport: 'quic' }));
    assert.equal(out.length, 1, out.join('\n'));
    assert.match(out[0], /pull "from producer".*delivery.*is at-most-once but reads from push.*which is exactly-once/);
  });
});
