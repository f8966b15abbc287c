import { strict as assert } from 'assert';
import { DeliveryEngine, Link, LinkIo } from '../native/delivery/engine';
import { StreamError } from '../native/errors';
import { seededRandom } from './support/random';
import { until } from './support/until';

/**
 * The delivery engine over an in-memory transport that can lose and hold frame sets: what QUIC and
 * RDMA plug into (a LinkIo that moves frame sets both ways; engine.receive for what arrives).
 */

interface Wire {
  drop?: (frames: Buffer[], n: number) => boolean;
  held: boolean;
}

function pair(opts: { windowFrames?: number; ackOnDone?: boolean } = {}) {
  const delivered: number[] = [];
  const problems: StreamError[] = [];
  const wire: Wire = { held: false };
  const holdQueue: Array<() => void> = [];
  let dataSent = 0;
  let a!: DeliveryEngine;
  let b!: DeliveryEngine;
  const ioFor = (self: () => DeliveryEngine, other: () => DeliveryEngine, me: string, peer: string, receiver: boolean): LinkIo => ({
    send(_link, frames) {
      const isData = frames[0][3] === 1;
      if (isData) dataSent++;
      if (isData && wire.drop?.(frames, dataSent)) return Promise.resolve();
      const go = () => other().receive(me, Buffer.from(me), frames.map((f) => Buffer.from(f)));
      // Deliver asynchronously, in order, as a transport would.
      if (wire.held && receiver) holdQueue.push(go);
      else setImmediate(go);
      return Promise.resolve();
    },
    deliver(_link: Link, frames, skip, count, done) {
      for (let i = skip; i < count; i++) {
        delivered.push(frames[i].readUInt32LE(0));
        done?.(i);
      }
    },
    problem: (e) => problems.push(e),
    peers: () => undefined,
  });
  const common = { windowBytes: 1 << 30, beatMs: 20, deadMs: 500, addressed: false, count: () => 1 };
  a = new DeliveryEngine({ ...common, windowFrames: opts.windowFrames ?? 100 }, ioFor(() => a, () => b, 'a', 'b', false));
  b = new DeliveryEngine({ ...common, windowFrames: 100, ackOnDone: opts.ackOnDone }, ioFor(() => b, () => a, 'b', 'a', true));
  a.addLink('b', Buffer.from('b'));
  b.addLink('a', Buffer.from('a'));
  const release = () => holdQueue.splice(0).forEach((f) => f());
  return { a, b, delivered, problems, wire, release, close: () => (a.close(), b.close()) };
}

const msg = (seq: number) => {
  const f = Buffer.alloc(4);
  f.writeUInt32LE(seq);
  return [f];
};


describe('delivery engine (in-memory transport)', function () {
  it('the window holds transmit() back until acknowledgements free it', async function () {
    const p = pair({ windowFrames: 3 });
    try {
      await until('link up', () => p.a.peers === 1);
      p.wire.held = true; // everything from b to a (acknowledgements) is held
      const taken: number[] = [];
      for (let i = 0; i < 5; i++) void p.a.transmit(msg(i)).then(() => taken.push(i));
      await until('three in the window', () => taken.length === 3);
      await until('the receiver has them', () => p.delivered.length === 3);
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(taken, [0, 1, 2], 'the fourth waits for an acknowledgement');
      p.wire.held = false;
      p.release();
      await until('all taken', () => taken.length === 5);
      await until('all delivered', () => p.delivered.length === 5);
      assert.deepEqual(p.delivered, [0, 1, 2, 3, 4]);
    } finally {
      p.close();
    }
  });

  it('lost frame sets are asked for again: all arrive once, in order', async function () {
    const p = pair();
    try {
      await until('link up', () => p.a.peers === 1);
      // One data frame set in seven vanishes, resends too, chosen by a seeded generator. (Every
      // seventh by count could drop the same resend forever: a tail of 7k frame sets resent
      // together puts the gap at the same count each round. It did once in a full suite.)
      const random = seededRandom();
      p.wire.drop = () => random() < 1 / 7;
      for (let i = 0; i < 500; i++) await p.a.transmit(msg(i));
      await until('all delivered', () => p.delivered.length >= 500, 10_000);
      assert.deepEqual(p.delivered, Array.from({ length: 500 }, (_, i) => i));
      assert.ok(p.a.redelivered > 0, 'some were resent');
      assert.ok(await p.a.settle(5000), 'everything acknowledged in the end');
    } finally {
      p.close();
    }
  });

  it('duplicates are dropped and acknowledged again', async function () {
    const p = pair();
    try {
      await until('link up', () => p.a.peers === 1);
      for (let i = 0; i < 20; i++) await p.a.transmit(msg(i));
      await until('delivered', () => p.delivered.length === 20);
      // Force a resend of everything still held, as after a peer restart: b must not deliver twice.
      (p.a as unknown as { resend(l: Link, from: number): void }).resend((p.a as unknown as { links: Map<string, Link> }).links.get('b')!, 0);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(p.delivered.length, 20);
      assert.ok(await p.a.settle(2000));
    } finally {
      p.close();
    }
  });
});
