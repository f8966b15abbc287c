import { strict as assert } from 'assert';
import { StreamError } from '../native/errors';
import { QuicEndpoint } from '../native/quic/engine';
import { decodeData, encodeData, encodeRecord, Kind, RecordError, RecordReader } from '../native/quic/framing';
import { loadIdentity } from '../native/quic/pki';
import { openQuicStream, QuicStreamConfig } from '../native/quic/stream';
import { Pattern, StreamStatus, ZmqStream } from '../native/zmq';
import { freeUdpPort, quicIdentities, quicTestConfig, startLossyRelay } from './support/quic';
import { until } from './support/until';

/** The QUIC transport in one process over real UDP on loopback: patterns, certificates, 0-RTT, loss. */

interface Opened {
  stream: ReturnType<typeof openQuicStream>;
  got: { payload: unknown; key?: string; meta?: Record<string, unknown> }[];
  problems: StreamError[];
  statuses: StreamStatus[];
}

const open: Opened[] = [];

function quic(pattern: Pattern, tlsDir: string, where: { bind?: number; connect?: number[] }, extra: Partial<QuicStreamConfig> = {}): Opened {
  const o: Opened = { got: [], problems: [], statuses: [], stream: undefined as unknown as Opened['stream'] };
  o.stream = openQuicStream(
    quicTestConfig(pattern, tlsDir, where, extra),
    {
      message: (m, key) => o.got.push({ payload: m.payload, key: key?.toString('utf8'), meta: m.meta }),
      status: (s) => o.statuses.push(s),
      problem: (e) => o.problems.push(e),
    },
  );
  open.push(o);
  return o;
}


function sendAll(s: ZmqStream, payloads: unknown[], key?: string): Promise<void> {
  return Promise.all(
    payloads.map(
      (p) => new Promise<void>((res, rej) => s.send(p, key === undefined ? undefined : Buffer.from(key), undefined, (e) => (e ? rej(e) : res()))),
    ),
  ).then(() => undefined);
}

describe('QUIC transport (native)', function () {
  this.timeout(30_000);
  let dirs: string[];
  before(() => {
    dirs = quicIdentities(4);
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((o) => o.stream.close(0)));
  });

  it('push → pull: 20 000 small messages and 64 KiB ones arrive complete and in order', async function () {
    const port = await freeUdpPort();
    const push = quic('push', dirs[0], { bind: port });
    const pull = quic('pull', dirs[1], { connect: [port] });
    await until('a peer', () => push.stream.peers === 1 && pull.stream.peers === 1);
    const small = Array.from({ length: 20_000 }, (_, i) => i);
    const big = Array.from({ length: 50 }, (_, i) => Buffer.alloc(65536, i));
    await sendAll(push.stream, [...small, ...big]);
    await until('all messages', () => pull.got.length === small.length + big.length);
    assert.deepEqual(pull.got.slice(0, small.length).map((m) => m.payload), small);
    pull.got.slice(small.length).forEach((m, i) => assert.ok(Buffer.isBuffer(m.payload) && (m.payload as Buffer).equals(big[i]), `big message ${i}`));
    assert.ok(push.statuses.some((s) => s.state === 'ready' && /quic: 1 peer/.test(s.text)));
  });

  it('push round-robins over two pulls; a pull fair-queues two pushes', async function () {
    const port = await freeUdpPort();
    const push = quic('push', dirs[0], { bind: port }, { batch: false });
    const a = quic('pull', dirs[1], { connect: [port] });
    const b = quic('pull', dirs[2], { connect: [port] });
    await until('two peers', () => push.stream.peers === 2);
    // Unbatched, one frame set per message: the split shows the round-robin.
    await sendAll(push.stream, Array.from({ length: 1000 }, (_, i) => i));
    await until('all', () => a.got.length + b.got.length === 1000);
    assert.ok(a.got.length >= 1 && b.got.length >= 1, `both pulls got messages (${a.got.length}, ${b.got.length})`);
    const all = [...a.got, ...b.got].map((m) => m.payload as number).sort((x, y) => x - y);
    assert.deepEqual(all, Array.from({ length: 1000 }, (_, i) => i));

    const port2 = await freeUdpPort();
    const pull = quic('pull', dirs[3], { bind: port2 });
    const p1 = quic('push', dirs[1], { connect: [port2] });
    const p2 = quic('push', dirs[2], { connect: [port2] });
    await until('two pushes', () => pull.stream.peers === 2 && p1.stream.peers === 1 && p2.stream.peers === 1);
    await Promise.all([sendAll(p1.stream, Array.from({ length: 3000 }, (_, i) => `a${i}`)), sendAll(p2.stream, Array.from({ length: 3000 }, (_, i) => `b${i}`))]);
    await until('both streams', () => pull.got.length === 6000);
    const fromA = pull.got.map((m) => m.payload as string).filter((p) => p.startsWith('a'));
    assert.deepEqual(fromA, Array.from({ length: 3000 }, (_, i) => `a${i}`), 'each sender stays in order');
  });

  it('pub fans out to subs by topic prefix', async function () {
    const port = await freeUdpPort();
    const pub = quic('pub', dirs[0], { bind: port });
    const sa = quic('sub', dirs[1], { connect: [port] }, { topics: ['sensor/'] });
    const sall = quic('sub', dirs[2], { connect: [port] }, { topics: [] });
    await until('two subs', () => pub.stream.peers === 2);
    await sendAll(pub.stream, [1, 2], 'sensor/1');
    await sendAll(pub.stream, [3], 'other');
    await sendAll(pub.stream, [4], 'sensor/2');
    await until('deliveries', () => sa.got.length === 3 && sall.got.length === 4);
    assert.deepEqual(sa.got.map((m) => [m.key, m.payload]), [['sensor/1', 1], ['sensor/1', 2], ['sensor/2', 4]]);
    assert.deepEqual(sall.got.map((m) => m.payload), [1, 2, 3, 4]);
  });

  it('router answers dealers by identity, and refuses an unknown identity', async function () {
    const port = await freeUdpPort();
    const router = quic('router', dirs[0], { bind: port });
    const d1 = quic('dealer', dirs[1], { connect: [port] }, { identity: 'worker-1' });
    const d2 = quic('dealer', dirs[2], { connect: [port] }, { identity: 'worker-2' });
    await until('two dealers', () => router.stream.peers === 2);
    await sendAll(d1.stream, ['from 1']);
    await sendAll(d2.stream, ['from 2']);
    await until('requests', () => router.got.length === 2);
    assert.deepEqual(router.got.map((m) => [m.key, m.payload]).sort(), [['worker-1', 'from 1'], ['worker-2', 'from 2']]);
    await sendAll(router.stream, ['reply 2'], 'worker-2');
    await until('reply', () => d2.got.length === 1);
    assert.equal(d2.got[0].payload, 'reply 2');
    assert.equal(d1.got.length, 0);
    await assert.rejects(sendAll(router.stream, ['x'], 'nobody'), (e: StreamError) => e.code === 'EHOSTUNREACH' && /"nobody"/.test(e.message));
  });

  it('refuses a peer whose certificate comes from another CA, with a clear error on both sides', async function () {
    const [foreign] = quicIdentities(1, 'other');
    const port = await freeUdpPort();
    const push = quic('push', dirs[0], { bind: port });
    const pull = quic('pull', foreign, { connect: [port] });
    await until('refusals', () => pull.problems.some((e) => e.code === 'ETLS') && push.problems.some((e) => e.code === 'ETLS'));
    const text = pull.problems.find((e) => e.code === 'ETLS')!.message;
    assert.match(text, /TLS handshake failed: the peer's certificate was refused here \(TLS unknown_ca\)/);
    assert.match(push.problems.find((e) => e.code === 'ETLS')!.message, /certificate/);
    assert.equal(push.stream.peers, 0);
    assert.equal(pull.stream.peers, 0);
    assert.ok(pull.statuses.some((s) => s.state === 'error' && /TLS/.test(s.text)));
    const sent = new Promise<StreamError | undefined>((r) => push.stream.send('secret', undefined, undefined, r));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(pull.got.length, 0, 'nothing crossed');
    void sent;
  });

  it('a reconnecting client resumes its session and sends 0-RTT early data', async function () {
    const tls = loadIdentity(dirs[0]);
    const server = new QuicEndpoint({ tls }, 'udp4', true);
    const received: { text: string; early: boolean; resumed: boolean }[] = [];
    server.socket.unref();
    await server.bind('127.0.0.1', 0, true);
    const serverOpts = (server as unknown as { opts: { onAccept?: (c: import('../native/quic/engine').QuicConn) => void } }).opts;
    serverOpts.onAccept = (conn) => {
      conn.handlers = {
        data: (b) => received.push({ text: b.toString(), early: conn.q.isInEarlyData(), resumed: conn.q.isResumed() }),
      };
    };
    const client = new QuicEndpoint({ tls: loadIdentity(dirs[1]) }, 'udp4', true);
    await client.bind('127.0.0.1', 0, false);
    try {
      const first = client.connect('127.0.0.1', server.port);
      let opened = false;
      first.handlers = { open: () => (opened = true) };
      first.write(Buffer.from('hello 1'));
      await until('first exchange', () => opened && received.length === 1);
      assert.equal(first.q.isResumed(), false);
      await until('a session ticket', () => first.session() !== undefined);
      const session = first.session()!;
      let gone = false;
      first.handlers.close = () => (gone = true);
      first.close('reconnect');
      await until('first closed', () => gone);

      const second = client.connect('127.0.0.1', server.port, session);
      // Written before any answer from the server: it goes out as 0-RTT early data with the ClientHello.
      second.write(Buffer.from('hello 2'));
      let opened2 = false;
      second.handlers = { open: () => (opened2 = true) };
      await until('resumed exchange', () => opened2 && received.length === 2);
      assert.equal(second.q.isResumed(), true, 'client resumed');
      assert.equal(second.sawEarlyData, true, 'client sent early data');
      // The server read it while still in early data: it came before the handshake completed.
      assert.deepEqual(received[1], { text: 'hello 2', early: true, resumed: true });
    } finally {
      await client.close();
      await server.close();
    }
  });

  it('the stream layer resumes after a drop and greets in 0-RTT', async function () {
    const port = await freeUdpPort();
    const push = quic('push', dirs[0], { bind: port });
    const pull = quic('pull', dirs[1], { connect: [port] });
    await until('peer', () => pull.stream.peers === 1);
    await sendAll(push.stream, [1]);
    await until('first', () => pull.got.length === 1);
    await new Promise((r) => setTimeout(r, 100)); // let the session ticket arrive (it follows the handshake)
    // The push side drops the connection (as after a restart of its peer): the pull reconnects.
    for (const ep of push.stream.endpoints) for (const c of ep.connections) c.close('test drop');
    await until('reconnected', () => pull.stream.resumed >= 1 && pull.stream.peers === 1 && push.stream.peers === 1);
    assert.ok(pull.stream.earlyData >= 1, 'the greeting went as early data');
    await sendAll(push.stream, [2]);
    await until('second', () => pull.got.length === 2);
    assert.deepEqual(pull.got.map((m) => m.payload), [1, 2]);
  });

  it('a transfer through a lossy, delaying relay completes in order with nothing lost or duplicated', async function () {
    const port = await freeUdpPort();
    const pull = quic('pull', dirs[1], { bind: port });
    const relay = await startLossyRelay(port, { drop: 0.05, delay: 0.15, maxDelayMs: 20, seed: 7 });
    try {
      const push = quic('push', dirs[0], { connect: [relay.port] });
      await until('peer', () => push.stream.peers === 1);
      const n = 3000;
      const payloads = Array.from({ length: n }, (_, i) => (i % 15 === 0 ? Buffer.alloc(20_000, i % 256) : `m${i}`));
      await sendAll(push.stream, payloads);
      await until('all through the relay', () => pull.got.length >= n, 25_000);
      await new Promise((r) => setTimeout(r, 100)); // a duplicate would show up now
      assert.equal(pull.got.length, n, 'no duplicates');
      pull.got.forEach((m, i) => {
        const want = payloads[i];
        if (Buffer.isBuffer(want)) assert.ok(Buffer.isBuffer(m.payload) && want.equals(m.payload as Buffer), `message ${i}`);
        else assert.equal(m.payload, want, `message ${i}`);
      });
      assert.ok(relay.dropped >= 5 && relay.delayed >= 5, `the relay dropped ${relay.dropped} and delayed ${relay.delayed}`);
    } finally {
      await relay.close();
    }
  });
});

describe('QUIC stream records', function () {
  it('reassemble from chunks of any size, small frames copied and large ones passed whole', function () {
    const frames = [Buffer.from('topic'), Buffer.alloc(40_000, 7), Buffer.from('tail'), Buffer.alloc(0)];
    const bytes = Buffer.concat([encodeRecord(Kind.Hello, Buffer.from('{}')), ...encodeData(frames), ...encodeData([Buffer.from('x')])]);
    for (const size of [1, 3, 7, 1000, 16_384, bytes.length]) {
      const got: Array<[Kind, Buffer]> = [];
      const reader = new RecordReader(1 << 20, (k, b) => got.push([k, Buffer.from(b)]));
      for (let off = 0; off < bytes.length; off += size) reader.push(bytes.subarray(off, off + size));
      assert.deepEqual(got.map(([k]) => k), [Kind.Hello, Kind.Data, Kind.Data], `chunks of ${size}`);
      assert.deepEqual(decodeData(got[1][1]), frames);
      assert.deepEqual(decodeData(got[2][1]), [Buffer.from('x')]);
    }
  });

  it('refuse a record over the limit and a frame running past its record', function () {
    const reader = new RecordReader(100, () => undefined);
    assert.throws(() => reader.push(Buffer.concat(encodeData([Buffer.alloc(200)]))), RecordError);
    const body = Buffer.alloc(8);
    body.writeUInt32LE(50, 0);
    assert.throws(() => decodeData(body), /runs past the end of its record/);
  });
});
