import { strict as assert } from 'assert';
import type { Node, NodeAPI } from 'node-red';
import { trackCompletion } from '../nodes/common/completion';

/** nodes/common/completion.ts: an exactly-once receiver acknowledges when the nodes it is wired to are done. */
describe('completion tracking', function () {
  function runtime() {
    const hooks = new Map<string, (ev: object) => void>();
    const RED = { hooks: { add: (name: string, fn: (ev: object) => void) => hooks.set(name, fn), remove: (name: string) => hooks.delete(name) } } as unknown as NodeAPI;
    const complete = (msgid: string, nodeId: string) => [...hooks.values()].forEach((fn) => fn({ msg: { _msgid: msgid }, node: { id: nodeId } }));
    return { RED, hooks, complete };
  }

  it('waits for every wired node, and not for one further downstream completing the same message', function () {
    const { RED, hooks, complete } = runtime();
    const c = trackCompletion(RED, { id: 'pull' } as Node, [['a', 'b']])!;
    let done = 0;
    c.track('m1', () => done++);
    complete('m1', 'a');
    complete('m1', 'a-next'); // a's downstream node, same _msgid
    assert.equal(done, 0, 'b has not finished');
    complete('m1', 'b');
    assert.equal(done, 1);
    c.stop();
    assert.equal(hooks.size, 0, 'the hook is removed');
  });
});
