import { strict as assert } from 'assert';
import { BatchWriter, decodeFrames, encodeDetached, encodeMeta, encodePayload, encodeSingle, FrameError } from '../native/codec';
import { parseEndpoint, splitList } from '../native/endpoint';

/** The spawn wire format and endpoint parsing, without sockets. */

describe('spawn wire format', function () {
  it('batches records and decodes them back in order with types and metadata', function () {
    const w = new BatchWriter(64);
    const values: unknown[] = ['a', 1, true, null, undefined, Buffer.from('xyz'), { k: [1] }];
    values.forEach((v, i) => w.add(encodeMeta(i === 0 ? { topic: 't' } : undefined), encodePayload(v)));
    const frame = w.seal();
    const out = decodeFrames([frame]);
    assert.deepEqual(
      out.map((m) => m.payload),
      values,
    );
    assert.deepEqual(out[0].meta, { topic: 't' });
    assert.equal(out[1].meta, undefined);
  });

  it('sends a large payload detached in its own frame, uncopied', function () {
    const big = Buffer.alloc(100_000, 1);
    const frames = encodeSingle(encodeMeta(undefined), encodePayload(big), 16 * 1024);
    assert.equal(frames.length, 2);
    assert.equal(frames[1], big, 'the payload frame is the caller\'s buffer itself');
    assert.equal(decodeFrames(frames)[0].payload, big);
  });

  it('sends several large payloads as one frame set: a header frame, then each payload uncopied', function () {
    const payloads = [Buffer.alloc(70_000, 1), Buffer.alloc(20_000, 2), Buffer.alloc(30_000, 3)];
    const metas = [encodeMeta({ seq: 0 }), encodeMeta(undefined), encodeMeta({ seq: 2 })];
    const frames = encodeDetached(metas, payloads.map((p) => encodePayload(p)));
    assert.equal(frames.length, 4);
    payloads.forEach((p, i) => assert.equal(frames[i + 1], p, `payload ${i} is the caller's buffer`));
    const out = decodeFrames(frames);
    assert.deepEqual(out.map((m) => m.payload), payloads);
    assert.deepEqual(out.map((m) => m.meta), [{ seq: 0 }, undefined, { seq: 2 }]);
    assert.throws(() => decodeFrames(frames.slice(0, 3)), /3 frames where 4 expected/);
    assert.throws(() => decodeFrames([frames[0], frames[2], frames[1], frames[3]]), /detached payload 1 of 20000 bytes, header says 70000/);
  });

  it('refuses an oversize record alone and keeps the rest of its batch', function () {
    const w = new BatchWriter(1 << 16);
    w.add(encodeMeta(undefined), encodePayload('small'));
    w.add(encodeMeta(undefined), encodePayload(Buffer.alloc(2000)));
    w.add(encodeMeta(undefined), encodePayload('after'));
    const out = decodeFrames([w.seal()], 1000);
    assert.equal(out[0].payload, 'small');
    assert.match(String(out[1].refused), /2000 bytes is over the maximum message size of 1000/);
    assert.equal(out[2].payload, 'after');
  });

  const good = encodeSingle(encodeMeta({ a: 1 }), encodePayload('hello'), 1 << 20)[0];
  const cases: Array<[string, Buffer[], RegExp]> = [
    ['no frames', [], /empty message/],
    ['a short frame', [Buffer.from('SR')], /shorter than the 8-byte header/],
    ['wrong magic', [Buffer.concat([Buffer.from('XX'), good.subarray(2)])], /bad magic/],
    ['wrong version', [Buffer.concat([good.subarray(0, 2), Buffer.from([7]), good.subarray(3)])], /unsupported version 7/],
    ['unknown flags', [Buffer.concat([good.subarray(0, 3), Buffer.from([0x80]), good.subarray(4)])], /unknown flags/],
    ['a truncated record', [good.subarray(0, good.length - 1)], /beyond the frame's end/],
    ['trailing bytes', [Buffer.concat([good, Buffer.from([0])])], /trailing bytes/],
    ['an impossible record count', [Buffer.concat([good.subarray(0, 4), Buffer.from([0xff, 0xff, 0xff, 0x7f]), good.subarray(8)])], /claims \d+ records/],
    ['a detached frame that is missing', [encodeSingle(encodeMeta(undefined), encodePayload(Buffer.alloc(10)), 1)[0]], /2 expected/],
    ['bad metadata JSON', [Buffer.concat([good.subarray(0, 17), Buffer.from('!'), good.subarray(18)])], /metadata does not parse/],
  ];
  for (const [what, frames, message] of cases) {
    it(`rejects ${what} with a FrameError`, function () {
      assert.throws(() => decodeFrames(frames), (e: unknown) => e instanceof FrameError && message.test(e.message));
    });
  }

  it('never throws anything but FrameError on random input', function () {
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.from(good);
      // Flip a few bytes of a valid frame, or cut it short.
      for (let k = 0; k < 3; k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      const frame = rnd() < 0.3 ? b.subarray(0, Math.floor(rnd() * b.length)) : b;
      try {
        decodeFrames([frame]);
      } catch (e) {
        assert.ok(e instanceof FrameError, `unexpected ${String(e)}`);
      }
    }
  });
});

describe('endpoints', function () {
  it('accepts tcp://host:port and host:port', function () {
    assert.deepEqual(parseEndpoint('tcp://10.0.0.1:5555', 'connect'), { host: '10.0.0.1', port: 5555 });
    assert.deepEqual(parseEndpoint('producer-0.pipe.spore.host:7000', 'connect'), { host: 'producer-0.pipe.spore.host', port: 7000 });
    assert.deepEqual(parseEndpoint('tcp://*:5555', 'bind'), { host: '*', port: 5555 });
  });

  it('names the value and the reason when an endpoint is wrong', function () {
    assert.throws(() => parseEndpoint('tcp://host:0', 'connect'), /port "0" is not a number from 1 to 65535/);
    assert.throws(() => parseEndpoint('udp://host:1', 'connect'), /transport "udp" is not supported/);
    assert.throws(() => parseEndpoint('tcp://*:5555', 'connect'), /can only be bound/);
    assert.throws(() => parseEndpoint('just-a-host', 'connect'), /not of the form tcp:\/\/host:port/);
    assert.throws(() => parseEndpoint('tcp://bad host:1', 'connect'), /not a host name/);
  });

  it('splits lists on commas, spaces and new lines', function () {
    assert.deepEqual(splitList(' a, b\nc  d,,'), ['a', 'b', 'c', 'd']);
    assert.deepEqual(splitList(undefined), []);
  });
});
