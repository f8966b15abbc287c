import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { startChildRuntime, tabFlow } from './support/child-runtime';
import { streamAutoAcrossZones } from './support/auto-pipeline';
import { freeUdpPort, quicIdentities } from './support/quic';

/**
 * Each pattern over QUIC between two headless Node-RED runtimes in separate processes, with
 * certificates from one pipeline CA (SPAWN_QUIC_DIR, as the launcher sets it).
 */

const N = 20_000;

/** Resolves when the stats file the runtime writes (SPAWN_STATS_FILE, once a second) shows `id` with a peer. */
async function waitForPeer(file: string, id: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const s = JSON.parse(fs.readFileSync(file, 'utf8')) as { nodes: Record<string, { peers: number }> };
      if ((s.nodes[id]?.peers ?? 0) > 0) return;
    } catch {
      // not written yet
    }
    if (Date.now() > end) throw new Error(`${id} had no peer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('QUIC between two Node-RED runtimes', function () {
  this.timeout(120_000);
  let dirs: string[];
  let tmp: string;
  before(() => {
    dirs = quicIdentities(2, 'runtimes');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-quic-rt-'));
  });

  it(`push → pull: ${N} messages complete and in order`, async function () {
    const port = await freeUdpPort();
    const c = await startChildRuntime(
      tabFlow('consumer', [
        { id: 'pull', type: 'spawn-pull', transport: 'quic', endpoints: `tcp://127.0.0.1:${port}`, wires: [['sink']] },
        { id: 'sink', type: 'seq-sink', expect: N, label: 'sink' },
      ]),
      'quic-consumer',
      { env: { SPAWN_QUIC_DIR: dirs[1] } },
    );
    const p = await startChildRuntime(
      tabFlow('producer', [
        { id: 'src', type: 'seq-source', count: N, size: 1000, kind: 'buffer', wires: [['push']] },
        { id: 'push', type: 'spawn-push', transport: 'quic', addr: '127.0.0.1', port },
      ]),
      'quic-producer',
      { env: { SPAWN_QUIC_DIR: dirs[0] } },
    );
    try {
      const r = await c.waitForReport((x) => x.done, 60_000);
      assert.equal(r.count, N);
      assert.equal(r.outOfOrder, 0, r.firstProblem);
      assert.equal(r.bytes, N * 1000);
    } finally {
      assert.equal(await p.stop(), 0, p.output());
      assert.equal(await c.stop(), 0, c.output());
    }
  });

  it('pub → sub: the subscribed topic only, in order', async function () {
    const port = await freeUdpPort();
    const stats = path.join(tmp, 'pub-stats.json');
    const go = path.join(tmp, 'pub-go');
    const c = await startChildRuntime(
      tabFlow('consumer', [
        { id: 'sub', type: 'spawn-sub', transport: 'quic', endpoints: `tcp://127.0.0.1:${port}`, topics: 'sensor/', wires: [['sink']] },
        { id: 'sink', type: 'seq-sink', expect: N, label: 'sink' },
      ]),
      'quic-sub',
      { env: { SPAWN_QUIC_DIR: dirs[1] } },
    );
    const p = await startChildRuntime(
      tabFlow('producer', [
        // Every message twice: on a topic the sub takes, and on one it does not.
        { id: 'src', type: 'seq-source', count: N, size: 100, kind: 'buffer', window: 2000, startFile: go, wires: [['topicA', 'topicB']] },
        { id: 'topicA', type: 'change', rules: [{ t: 'set', p: 'topic', pt: 'msg', to: 'sensor/1', tot: 'str' }], wires: [['pubA']] },
        { id: 'topicB', type: 'change', rules: [{ t: 'set', p: 'topic', pt: 'msg', to: 'other', tot: 'str' }], wires: [['pubA']] },
        { id: 'pubA', type: 'spawn-pub', transport: 'quic', addr: '127.0.0.1', port },
      ]),
      'quic-pub',
      { env: { SPAWN_QUIC_DIR: dirs[0], SPAWN_STATS_FILE: stats } },
    );
    try {
      await waitForPeer(stats, 'pubA');
      fs.writeFileSync(go, '');
      const r = await c.waitForReport((x) => x.done, 60_000);
      assert.equal(r.count, N);
      assert.equal(r.outOfOrder, 0, r.firstProblem);
    } finally {
      assert.equal(await p.stop(), 0, p.output());
      assert.equal(await c.stop(), 0, c.output());
    }
  });

  it('dealer → router → dealer: the router answers each request to the identity it came from', async function () {
    const port = await freeUdpPort();
    // The router's output goes back into its own input: msg.identity routes the echo to its dealer.
    const r1 = await startChildRuntime(tabFlow('server', [{ id: 'router', type: 'spawn-router', transport: 'quic', addr: '127.0.0.1', port, wires: [['router']] }]), 'quic-router', {
      env: { SPAWN_QUIC_DIR: dirs[0] },
    });
    const d = await startChildRuntime(
      tabFlow('client', [
        { id: 'src', type: 'seq-source', count: N, size: 200, kind: 'buffer', window: 1000, wires: [['dealer']] },
        { id: 'dealer', type: 'spawn-dealer', transport: 'quic', identity: 'worker-7', endpoints: `tcp://127.0.0.1:${port}`, wires: [['sink']] },
        { id: 'sink', type: 'seq-sink', expect: N, label: 'sink' },
      ]),
      'quic-dealer',
      { env: { SPAWN_QUIC_DIR: dirs[1] } },
    );
    try {
      const r = await d.waitForReport((x) => x.done, 60_000);
      assert.equal(r.count, N);
      assert.equal(r.outOfOrder, 0, r.firstProblem);
    } finally {
      assert.equal(await d.stop(), 0, d.output());
      assert.equal(await r1.stop(), 0, r1.output());
    }
  });
});

describe('transport auto between two stage runtimes', function () {
  this.timeout(120_000);

  it('stages in two availability zones choose QUIC on both sides and stream over it', async function () {
    await streamAutoAcrossZones('auto', 5000);
  });
});
