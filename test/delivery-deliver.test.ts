import { strict as assert } from 'assert';
import { encodeMeta, encodePayload, encodeSingle } from '../native/codec';
import { deliverFrameSet, DeliverContext } from '../native/delivery/deliver';
import type { Link } from '../native/delivery/engine';
import { StreamError } from '../native/errors';

/** native/delivery/deliver.ts: one frame set handed on, shared by the ZeroMQ, QUIC and RDMA links. */
describe('delivery: a frame set handed to the node', function () {
  const link = { id: Buffer.from('peer-1', 'latin1') } as Link;
  function context() {
    const got: unknown[] = [];
    const problems: StreamError[] = [];
    const ctx: DeliverContext = {
      format: 'spawn',
      maxMessageSize: 0,
      where: 'tcp://127.0.0.1:1',
      keyed: false,
      handlers: { message: (m, _key, done) => (got.push(m.payload), done?.()), problem: (e) => problems.push(e) },
      counts: { messages: 0, bytes: 0 },
    };
    return { ctx, got, problems };
  }

  it('completes what a header counts beyond the frame set, so acknowledgements go on', function () {
    const { ctx, got } = context();
    const done: number[] = [];
    // The delivery header said 3 messages; the frame set holds 1.
    deliverFrameSet(ctx, link, encodeSingle(encodeMeta(undefined), encodePayload('one'), 1 << 20), 0, 3, (i) => done.push(i));
    assert.deepEqual(got, ['one']);
    assert.deepEqual(done, [0, 1, 2]);
    assert.equal(ctx.counts.messages, 1);
  });

  it('reports a frame set that does not decode, naming its sender, and completes it whole', function () {
    const { ctx, problems } = context();
    ctx.sender = (l) => `rdma out at ${l.id.toString('latin1')}`;
    const done: number[] = [];
    deliverFrameSet(ctx, link, [Buffer.from('garbage!')], 1, 3, (i) => done.push(i));
    assert.deepEqual(done, [1, 2]);
    assert.equal(problems[0].code, 'EBADFRAME');
    assert.match(problems[0].message, /from rdma out at peer-1: /);
  });
});
