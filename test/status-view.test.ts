import { strict as assert } from 'assert';
import { StatusView } from '../nodes/common/status-view';

/** The status dot shared by the pattern nodes and the RDMA nodes (nodes/common/status-view.ts). */
describe('StatusView', function () {
  it('yellow ring while connecting, green dot when ready, yellow ", backpressure" while held, red ring on error; the same status is not sent twice', function () {
    const sent: Array<{ fill?: string; shape?: string; text?: string }> = [];
    let rate = '';
    const view = new StatusView({ status: (s: object) => sent.push(s) } as never, (text) => text + rate);
    view.show({ state: 'connecting', peers: 0, text: 'waiting' });
    view.show({ state: 'ready', peers: 1, text: '1 peer' });
    view.show({ state: 'ready', peers: 1, text: '1 peer' });
    view.backpressure(true);
    rate = ', 5 msg/s';
    view.refresh();
    view.backpressure(false);
    view.show({ state: 'error', peers: 0, text: 'EADDRINUSE' });
    assert.deepEqual(sent, [
      { fill: 'yellow', shape: 'ring', text: 'waiting' },
      { fill: 'green', shape: 'dot', text: '1 peer' },
      { fill: 'yellow', shape: 'dot', text: '1 peer, backpressure' },
      { fill: 'yellow', shape: 'dot', text: '1 peer, 5 msg/s, backpressure' },
      { fill: 'green', shape: 'dot', text: '1 peer, 5 msg/s' },
      { fill: 'red', shape: 'ring', text: 'EADDRINUSE' },
    ]);
  });
});
