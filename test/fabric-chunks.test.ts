import { strict as assert } from 'assert';
import crypto from 'crypto';
import { CHUNK_HEADER, MessageCursor, Reassembler } from '../native/fabric/chunks';

/** Cutting frame sets into chunks and rebuilding them (native/fabric/chunks.ts), without a fabric. */

/** The chunks' data (headers left out) a cursor makes for `frames` with chunks of `chunkBytes`. */
function cut(frames: Buffer[], chunkBytes: number): Buffer[] {
  const cursor = new MessageCursor(frames);
  const out: Buffer[] = [];
  while (!cursor.done) {
    const b = Buffer.alloc(chunkBytes);
    const n = cursor.fill(b, CHUNK_HEADER, chunkBytes - CHUNK_HEADER);
    out.push(b.subarray(CHUNK_HEADER, CHUNK_HEADER + n));
  }
  return out;
}

describe('fabric chunks', function () {
  it('slices() and skip() hand out the same chunks as fill(), as views (for zero-copy sends)', function () {
    const shapes = [[0], [1], [17, 1 << 20], [5, 0, 3], [65536], [100_000, 3], [3, 0]];
    for (const sizes of shapes) {
      const frames = sizes.map((n) => crypto.randomBytes(n));
      for (const chunk of [CHUNK_HEADER + 16, 4096, 65536 + 29, 2 << 20]) {
        const room = chunk - CHUNK_HEADER;
        const cursor = new MessageCursor(frames);
        const viaSlices: Buffer[] = [];
        let rounds = 0;
        while (!cursor.done) {
          assert.ok(rounds++ < 1_000_000, 'the cursor never ends');
          const parts = cursor.slices(room);
          const bytes = parts.reduce((n, x) => n + x.length, 0);
          assert.ok(bytes <= room && bytes > 0, `sizes ${sizes} chunk ${chunk}: a slice set of ${bytes} bytes`);
          // Views, not copies: a large frame's slice shares its memory.
          for (const x of parts) if (x.length >= 1024) assert.ok(frames.some((f) => f.buffer === x.buffer), 'a slice is a copy');
          cursor.skip(bytes);
          viaSlices.push(Buffer.concat(parts));
        }
        assert.deepEqual(
          viaSlices.map((c) => c.toString('hex')),
          cut(frames, chunk).map((c) => c.toString('hex')),
          `sizes ${sizes} chunk ${chunk}`,
        );
      }
    }
  });

  it('rebuilds frame sets of every shape over chunk sizes that cut anywhere', function () {
    const shapes = [[0], [1], [17, 1 << 20], [5, 0, 3], [65536], [100_000, 3]];
    for (const sizes of shapes) {
      const frames = sizes.map((n) => crypto.randomBytes(n));
      for (const chunk of [CHUNK_HEADER + 16, CHUNK_HEADER + 100, 4096, 65536 + 29, 2 << 20]) {
        const r = new Reassembler(0);
        const chunks = cut(frames, chunk);
        const results = chunks.map((c) => r.push(c));
        // Only the last chunk completes the message.
        assert.ok(results.slice(0, -1).every((x) => x === null), `sizes ${sizes} chunk ${chunk}`);
        const last = results[results.length - 1] as { frames: Buffer[] };
        assert.deepEqual(
          last.frames.map((f) => f.toString('hex')),
          frames.map((f) => f.toString('hex')),
        );
        assert.ok(r.atStart);
      }
    }
  });

  it('messages follow one another; one over the limit is skipped (not buffered) and reported with its size', function () {
    const r = new Reassembler(1000);
    const small = [Buffer.from('abc')];
    const big = [Buffer.alloc(5000, 1)];
    const out = [...cut(small, 64), ...cut(big, 512), ...cut(small, 64)].map((c) => r.push(c)).filter((x) => x !== null);
    assert.deepEqual(out, [{ frames: [Buffer.from('abc')] }, { refused: 5000 }, { frames: [Buffer.from('abc')] }]);
  });

  it('says what is wrong with a chunk that cannot start a message', function () {
    assert.deepEqual(new Reassembler(0).push(Buffer.from([1, 2])), { bad: 'a chunk of 2 bytes cannot start a message' });
    const claim = Buffer.alloc(8);
    claim.writeUInt32LE(99, 0);
    assert.deepEqual(new Reassembler(0).push(claim), { bad: 'a message preamble claims 99 frames' });
    const extra = Buffer.concat([cut([Buffer.from('x')], 64)[0], Buffer.from('junk')]);
    assert.deepEqual(new Reassembler(0).push(extra), { bad: '4 bytes beyond the end of a message' });
  });
});
