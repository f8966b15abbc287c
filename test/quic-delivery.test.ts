import { strict as assert } from 'assert';
import { StreamError } from '../native/errors';
import { openQuicStream, QuicStream, QuicStreamConfig } from '../native/quic/stream';
import { Pattern } from '../native/zmq';
import { freeUdpPort, quicIdentities, quicTestConfig, startLossyRelay } from './support/quic';
import { until } from './support/until';

/**
 * Exactly-once over QUIC in one process, real UDP on loopback: the link layer (native/delivery/quic-links.ts),
 * reached as every caller reaches it, through openQuicStream with `delivery: 'exactly-once'`.
 */

interface Opened {
  stream: QuicStream;
  got: { payload: unknown; key?: Buffer }[];
  problems: StreamError[];
}

const open: Opened[] = [];

function quic(pattern: Pattern, tlsDir: string, where: { bind?: number; connect?: number[] }, extra: Partial<QuicStreamConfig> = {}, exactlyOnce = true): Opened {
  const o: Opened = { got: [], problems: [], stream: undefined as unknown as QuicStream };
  const cfg = quicTestConfig(pattern, tlsDir, where, { noPeerMs: 1000, delivery: exactlyOnce ? 'exactly-once' : 'at-most-once', ...extra });
  const handlers = {
    message: (m: { payload: unknown }, key: Buffer | undefined) => o.got.push({ payload: m.payload, key }),
    status: () => undefined,
    problem: (e: StreamError) => o.problems.push(e),
  };
  o.stream = openQuicStream(cfg, handlers);
  open.push(o);
  return o;
}


const sendAll = (o: Opened, payloads: unknown[], key?: Buffer) =>
  Promise.all(payloads.map((p) => new Promise<void>((res, rej) => o.stream.send(p, key, undefined, (e) => (e ? rej(e) : res())))));

describe('exactly-once over QUIC (native)', function () {
  this.timeout(60_000);
  let dirs: string[];
  before(() => {
    dirs = quicIdentities(3, 'eo');
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((o) => o.stream.close(0)));
  });

  it('push → pull: every message once, in order, all acknowledged before close', async function () {
    const port = await freeUdpPort();
    const push = quic('push', dirs[0], { bind: port });
    const pull = quic('pull', dirs[1], { connect: [port] });
    const n = 20_000;
    await sendAll(push, [...Array.from({ length: n }, (_, i) => i), ...Array.from({ length: 20 }, (_, i) => Buffer.alloc(65536, i))]);
    await until('all arrived', () => pull.got.length >= n + 20);
    assert.deepEqual(pull.got.slice(0, n).map((g) => g.payload), Array.from({ length: n }, (_, i) => i));
    assert.equal((pull.got[n + 19].payload as Buffer).length, 65536);
    assert.equal(pull.stream.stats().receivedMessages, n + 20);
    // A clean close waits for the acknowledgements: nothing is left undelivered.
    assert.equal(await push.stream.close(5000), 0);
    assert.deepEqual(push.problems, []);
  });

  it("openQuicStream with delivery 'exactly-once' is exactly-once itself: acknowledged on done(), not at-most-once", async function () {
    // Called directly, as a library user would, with no link layer given: the stream must make it.
    const port = await freeUdpPort();
    const statuses: string[] = [];
    const dones: Array<(() => void) | undefined> = [];
    const problems: StreamError[] = [];
    const eo = { noPeerMs: 1000, delivery: 'exactly-once' as const };
    const push = openQuicStream(quicTestConfig('push', dirs[0], { bind: port }, eo), {
      message: () => undefined,
      status: (s) => statuses.push(s.text),
      problem: (e) => problems.push(e),
    });
    const pull = openQuicStream(quicTestConfig('pull', dirs[1], { connect: [port] }, eo), {
      message: (_m, _key, done) => dones.push(done),
      acknowledges: true,
      status: () => undefined,
      problem: (e) => problems.push(e),
    });
    open.push({ stream: push, got: [], problems }, { stream: pull, got: [], problems });
    await new Promise<void>((res, rej) => push.send('one', undefined, undefined, (e) => (e ? rej(e) : res())));
    await until('delivered', () => dones.length === 1);
    assert.equal(typeof dones[0], 'function', 'an exactly-once receiver is given done() to acknowledge with');
    assert.ok(statuses.some((t) => /exactly-once/.test(t)), `status says exactly-once: ${statuses.join(' | ')}`);
    // Held by the sender's window until the receiver is done with it.
    assert.equal(push.stats().queued, 1);
    dones[0]!();
    await until('acknowledged', () => push.stats().queued === 0);
    assert.equal(pull.stats().receivedMessages, 1);
    assert.deepEqual(problems, []);
  });

  it('router ↔ dealer: requests and replies by identity, both ways exactly-once', async function () {
    const port = await freeUdpPort();
    const router = quic('router', dirs[0], { bind: port });
    const dealer = quic('dealer', dirs[1], { connect: [port] }, { identity: 'worker-1' });
    await sendAll(dealer, Array.from({ length: 500 }, (_, i) => i));
    await until('requests', () => router.got.length === 500);
    assert.equal(router.got[0].key!.toString(), 'worker-1');
    await sendAll(router, Array.from({ length: 500 }, (_, i) => i * 2), Buffer.from('worker-1'));
    await until('replies', () => dealer.got.length === 500);
    assert.deepEqual(dealer.got.map((g) => g.payload), Array.from({ length: 500 }, (_, i) => i * 2));
    await assert.rejects(sendAll(router, [1], Buffer.from('nobody')), /EHOSTUNREACH|no peer with identity/);
  });

  it('refuses a peer in the other delivery mode, naming both modes', async function () {
    const port = await freeUdpPort();
    const push = quic('push', dirs[0], { bind: port });
    const pull = quic('pull', dirs[1], { connect: [port] }, {}, false);
    await until('the refusal', () => push.problems.some((e) => /uses delivery at-most-once, this push exactly-once/.test(e.message)));
    assert.equal(pull.got.length, 0);
    void sendAll(push, [1]).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(pull.got.length, 0, 'nothing crossed');
  });

  it('a connection broken mid-stream (a lossy relay that goes dark) continues: complete, in order, once', async function () {
    const port = await freeUdpPort();
    const push = quic('push', dirs[0], { bind: port });
    const relay = await startLossyRelay(port, { drop: 0.02, delay: 0.02, maxDelayMs: 5, seed: 7 });
    try {
      const pull = quic('pull', dirs[1], { connect: [relay.port] });
      const n = 20_000;
      const sent = sendAll(push, Array.from({ length: n }, (_, i) => i));
      await until('a share arrived', () => pull.got.length >= n / 5);
      // Longer than the peer timeout: both sides give the connection up, the pull dials again.
      relay.blackout(2500);
      await sent;
      await until('all arrived', () => pull.got.length >= n, 30_000);
      assert.deepEqual(pull.got.map((g) => g.payload), Array.from({ length: n }, (_, i) => i));
      await until('the window empty', () => push.stream.stats().queued === 0, 10_000);
      // The pull dialled again (a resumed session is a second connection) and the stream went on.
      assert.ok(pull.stream.resumed >= 1, `reconnections: ${pull.stream.resumed}`);
      assert.ok(relay.dropped > 0);
    } finally {
      await relay.close();
    }
  });
});
