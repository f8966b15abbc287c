import { strict as assert } from 'assert';
import { formatRates, readyText, shortNumber } from '../nodes/common/live-status';
import { delay, freePort, load, node, startServer, statusHistory, stopServer, unload, waitForStatus } from './support/nr';

/**
 * The live status of a running transport node: the transport, its peers, and while messages flow
 * messages/s and bytes/s, changed at most once a second; an idle node's status is left alone.
 */

describe('live status', function () {
  it('writes rates short enough for a status line', function () {
    assert.equal(shortNumber(0), '0');
    assert.equal(shortNumber(950.4), '950');
    assert.equal(shortNumber(1234), '1.2k');
    assert.equal(shortNumber(34_567), '35k');
    assert.equal(shortNumber(1_500_000), '1.5M');
    assert.equal(shortNumber(2_000_000_000), '2G');
    assert.equal(formatRates({ messagesPerSecond: 1200, bytesPerSecond: 340_000 }), '1.2k msg/s · 340 kB/s');
    assert.equal(formatRates({ messagesPerSecond: 3, bytesPerSecond: 90 }), '3 msg/s · 90 B/s');
    assert.equal(readyText('2 peers', 'tcp', undefined), 'tcp: 2 peers');
    assert.equal(readyText('1 peer', 'tcp', { messagesPerSecond: 10, bytesPerSecond: 1000 }), 'tcp: 1 peer · 10 msg/s · 1 kB/s');
    // A stream that names its transport itself keeps its words.
    assert.equal(readyText('quic: 1 peer', 'tcp', undefined), 'quic: 1 peer');
    assert.equal(readyText('auto→tcp: 3 peers', 'tcp', { messagesPerSecond: 1, bytesPerSecond: 5 }), 'auto→tcp: 3 peers · 1 msg/s · 5 B/s');
  });

  describe('on running nodes', function () {
    before(startServer);
    after(stopServer);
    afterEach(unload);

    it('shows messages/s and bytes/s while messages flow, at most once a second, and nothing new while idle', async function () {
      this.timeout(20_000);
      const port = await freePort();
      await load([
        { id: 'tab1', type: 'tab', label: 'test' },
        { id: 'push', type: 'spawn-push', z: 'tab1', port, wires: [] },
        { id: 'pull', type: 'spawn-pull', z: 'tab1', endpoints: `tcp://127.0.0.1:${port}`, wires: [] },
      ]);
      await waitForStatus('pull', (s) => s.fill === 'green' && s.shape === 'dot' && s.text === 'tcp: 1 peer');
      await waitForStatus('push', (s) => s.text === 'tcp: 1 peer');

      const before = { push: statusHistory('push').length, pull: statusHistory('pull').length };
      const started = Date.now();
      const payload = 'x'.repeat(100);
      const sender = setInterval(() => {
        for (let i = 0; i < 50; i++) node('push').receive({ payload } as never);
      }, 20);
      const rate = /^tcp: 1 peer · [\d.]+k? msg\/s · [\d.]+ [kM]?B\/s$/;
      try {
        await waitForStatus('pull', (s) => s.fill === 'green' && rate.test(String(s.text)), 10_000, before.pull);
        await waitForStatus('push', (s) => s.fill === 'green' && rate.test(String(s.text)), 10_000, before.push);
      } finally {
        clearInterval(sender);
      }
      const flowingMs = Date.now() - started;
      // One change a second at most (plus the first sample's own).
      for (const id of ['push', 'pull'] as const) {
        const changes = statusHistory(id).length - before[id];
        assert.ok(changes <= Math.ceil(flowingMs / 1000) + 1, `${id}: ${changes} status changes in ${flowingMs} ms`);
      }

      // Traffic stopped: back to the plain status once, then silence.
      const stopped = { push: statusHistory('push').length, pull: statusHistory('pull').length };
      await waitForStatus('pull', (s) => s.text === 'tcp: 1 peer', 5_000, stopped.pull);
      await waitForStatus('push', (s) => s.text === 'tcp: 1 peer', 5_000, stopped.push);
      const idle = { push: statusHistory('push').length, pull: statusHistory('pull').length };
      // Proving that nothing happens takes waiting: over two sampling periods.
      await delay(2_200);
      assert.equal(statusHistory('push').length, idle.push, 'an idle push changes no status');
      assert.equal(statusHistory('pull').length, idle.pull, 'an idle pull changes no status');
    });
  });
});
