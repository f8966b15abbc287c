import { strict as assert } from 'assert';
import { collector } from '../native/gc-pacer';
import { Sender, SendCallback } from '../native/sender';

/**
 * Queues `count` payloads; returns weak references to them. Not inline in the (async) test: a
 * suspended async function may keep its last loop variable alive.
 */
function sendAll(sender: Sender, count: number, size: number, cb: SendCallback): Array<WeakRef<Buffer>> {
  const refs: Array<WeakRef<Buffer>> = [];
  for (let i = 0; i < count; i++) {
    const payload = Buffer.alloc(size, i);
    refs.push(new WeakRef(payload));
    sender.send(payload, undefined, undefined, cb);
  }
  return refs;
}

const turn = () => new Promise((r) => setImmediate(r));

/** native/sender.ts: the queue every transport's output side sends through. */
describe('sender: the output queue', function () {
  for (const [what, size] of [
    ['large payloads (each its own frame)', 1 << 20],
    ['small payloads (batched)', 100],
  ] as const) {
    it(`lets go of ${what} once the transport has taken them`, async function () {
      // A taken entry left in the queue array kept its payload alive until the next compaction,
      // 4,096 entries later: 4 GB at 1 MiB, all of it fresh memory the producer had to fault in.
      const sent: number[] = [];
      const sender = new Sender(
        { format: 'spawn', batch: true, batchBytes: 64 * 1024, detachBytes: 16 * 1024, maxMessageSize: 0, highWater: 1000, queueLimit: 10_000, envelope: false },
        async (frames) => {
          sent.push(frames.length);
        },
        { backpressure: () => {} },
      );
      let done = 0;
      const refs = sendAll(sender, 64, size, (err) => {
        assert.equal(err, undefined);
        done++;
      });
      assert.ok(await sender.drain(5000), 'the sender drained');
      assert.equal(done, 64);
      assert.ok(sent.length > 0);
      // WeakRefs hold their targets until the job that made them ends: collect a turn later.
      await turn();
      const gc = collector();
      assert.ok(gc, 'this Node cannot collect on request');
      gc();
      const alive = refs.flatMap((r, i) => (r.deref() === undefined ? [] : [i]));
      assert.deepEqual(alive, [], `payloads ${alive.join(', ')} of 0–63 still reachable after the transport took them`);
    });
  }
});
