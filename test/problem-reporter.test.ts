import { strict as assert } from 'assert';
import { EventEmitter } from 'events';
import type { Node } from 'node-red';
import { StreamError } from '../native/errors';
import { ProblemReporter } from '../nodes/common/problems';

/** nodes/common/problems.ts: transport problems to node.error, one per code per interval. */
describe('problem reporter', function () {
  function setup(intervalMs = 1000) {
    const said: Array<{ text: string; code: string }> = [];
    const node = { error: (e: StreamError, msg: { payload: string; code: string }) => said.push({ text: msg.payload, code: e.code }) } as unknown as Node;
    const events = new EventEmitter();
    const reporter = new ProblemReporter(node, events, intervalMs);
    return { said, events, reporter };
  }

  it('holds reports until the flows have started, then says them', function () {
    const { said, events, reporter } = setup();
    reporter.report(new StreamError('EFABRIC', 'bad endpoint'));
    assert.equal(said.length, 0);
    events.emit('flows:started');
    assert.deepEqual(said, [{ text: 'bad endpoint', code: 'EFABRIC' }]);
    reporter.stop();
  });

  it('says a code once per interval, then what it held back with a count', async function () {
    const { said, events, reporter } = setup(50);
    events.emit('flows:started');
    for (let i = 1; i <= 4; i++) reporter.report(new StreamError('EPROTO', `garbage ${i}`));
    reporter.report(new StreamError('EPEERGONE', 'gone'));
    assert.deepEqual(said.map((s) => s.text), ['garbage 1', 'gone']);
    await new Promise((r) => setTimeout(r, 120));
    assert.deepEqual(said.map((s) => s.text), ['garbage 1', 'gone', 'garbage 4 (and 2 more like it)']);
    reporter.stop();
  });

  it('says what it held back when the node stops, once (a problem of the close itself is not lost)', function () {
    const { said, events, reporter } = setup(60_000);
    events.emit('flows:started');
    reporter.report(new StreamError('EFABRIC', 'first'));
    reporter.report(new StreamError('EFABRIC', 'rdma out on h:1 closed: the provider still holds 2 operations'));
    assert.equal(said.length, 1);
    reporter.stop();
    assert.deepEqual(said.map((s) => s.text), ['first', 'rdma out on h:1 closed: the provider still holds 2 operations']);
    reporter.stop();
    assert.equal(said.length, 2);
  });
});
