import { strict as assert } from 'assert';
import { openReliableQuicStream } from '../native/delivery/quic-links';
import { StreamError } from '../native/errors';
import { openQuicStream, QuicStream, QuicStreamConfig } from '../native/quic/stream';
import { Pattern } from '../native/zmq';
import { freeUdpPort, quicIdentities, quicTestConfig, startLossyRelay } from './support/quic';

/** Exactly-once over QUIC in one process, real UDP on loopback: the link layer (native/delivery/quic-links.ts). */

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
  o.stream = exactlyOnce ? openReliableQuicStream(cfg, handlers) : openQuicStream(cfg, handlers);
  open.push(o);
  return o;
}

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
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
