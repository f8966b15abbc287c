import { strict as assert } from 'assert';
import { startChildRuntime, tabFlow } from './support/child-runtime';
import { collect, FlowNode, freePort, load, node, startServer, statusHistory, stopServer, unload, waitFor, waitForStatus } from './support/nr';
import { requireSystem } from './support/system';
import { hasLibfabric, hasEfaDevice } from './support/libfabric';
import { rdmaConfig } from '../nodes/common/rdma-node';

/**
 * The rdma out and efa in nodes in a real Node-RED runtime (the test helper), over real libfabric
 * (shm and tcp providers), and between two runtimes in child processes.
 */

// eslint-disable-next-line @typescript-eslint/no-var-requires
const rdmaModules = [require('../nodes/rdma-out/rdma-out'), require('../nodes/efa-in/efa-in'), require('../nodes/stage/stage')];
const INSTALL = 'apt-get install libfabric1';
const TAB = { id: 'tab1', type: 'tab', label: 'producer' };
const TAB2 = { id: 'tab2', type: 'tab', label: 'consumer' };
const catcher = (z = 'tab1'): FlowNode[] => [
  { id: `catch-${z}`, type: 'catch', z, scope: null, uncaught: false, wires: [[`caught-${z}`]] },
  { id: `caught-${z}`, type: 'helper', z },
];
const loadRdma = (flow: FlowNode[]) => load(flow, rdmaModules);

describe('rdma out and efa in nodes', function () {
  this.timeout(60_000);
  before(startServer);
  after(stopServer);
  afterEach(unload);

  it('reads its settings: port 7500 by default, provider auto, checks the provider', function () {
    const out = rdmaConfig('out', { id: 'o', type: 'spawn-rdma-out', z: 't', name: '' });
    assert.deepEqual([out.provider, out.bind], ['auto', { host: '*', port: 7500 }]);
    const inn = rdmaConfig('in', { id: 'i', type: 'spawn-efa-in', z: 't', name: '', provider: 'shm', endpoints: 'tcp://127.0.0.1:7600' });
    assert.deepEqual([inn.provider, inn.connect], ['shm', [{ host: '127.0.0.1', port: 7600 }]]);
    assert.throws(() => rdmaConfig('out', { id: 'o', type: 'spawn-rdma-out', z: 't', name: '', provider: 'verbs' as never }), /provider "verbs" must be one of auto, efa, tcp, shm/);
    assert.throws(() => rdmaConfig('in', { id: 'i', type: 'spawn-efa-in', z: 't', name: '' }), /pick a source stage, or give an endpoint/);
  });

  for (const provider of ['shm', 'tcp'] as const) {
    it(`${provider}: rdma out → efa in (source stage) delivers 3000 typed messages in order; status names the provider and peers`, async function () {
      requireSystem(this, 'libfabric', hasLibfabric(), INSTALL);
      const port = await freePort();
      await loadRdma([
        TAB,
        TAB2,
        { id: 'stage1', type: 'spawn-stage', z: 'tab1', stageId: 'producer' },
        { id: 'out', type: 'spawn-rdma-out', z: 'tab1', provider, addr: '127.0.0.1', port, wholeMsg: true, wires: [] },
        { id: 'in', type: 'spawn-efa-in', z: 'tab2', provider, sourceStage: 'producer', endpoints: '', wires: [['got']] },
        { id: 'got', type: 'helper', z: 'tab2' },
      ]);
      const expectName = provider === 'tcp' ? 'tcp;ofi_rxm' : 'shm';
      await waitForStatus('out', (s) => s.text === `${expectName}: 1 peer` && s.fill === 'green');
      await waitForStatus('in', (s) => s.text === `${expectName}: 1 peer`);
      const got = collect('got', 3000, () => true, 30_000);
      const big = Buffer.alloc(600_000, 7); // over one 256 KiB chunk: split and rebuilt
      for (let i = 0; i < 3000; i++) {
        const payload = i % 4 === 0 ? i : i % 4 === 1 ? `m${i}` : i % 4 === 2 ? { i } : i === 3 ? big : Buffer.from([i & 0xff]);
        node('out').receive({ payload, seq: i } as never);
      }
      const msgs = await got;
      assert.deepEqual(
        msgs.map((m) => m.seq),
        Array.from({ length: 3000 }, (_, i) => i),
      );
      assert.equal(msgs[4].payload, 4);
      assert.equal(msgs[5].payload, 'm5');
      assert.deepEqual(msgs[6].payload, { i: 6 });
      assert.ok(Buffer.isBuffer(msgs[3].payload) && (msgs[3].payload as Buffer).equals(big));
    });
  }

  it('a message over the maximum size goes to Catch with EMSGSIZE; the stream carries on', async function () {
    requireSystem(this, 'libfabric', hasLibfabric(), INSTALL);
    const port = await freePort();
    await loadRdma([
      TAB,
      ...catcher(),
      { id: 'out', type: 'spawn-rdma-out', z: 'tab1', provider: 'shm', addr: '127.0.0.1', port, maxMessageSize: 1000, wires: [] },
      { id: 'in', type: 'spawn-efa-in', z: 'tab1', provider: 'shm', endpoints: `tcp://127.0.0.1:${port}`, wires: [['got']] },
      { id: 'got', type: 'helper', z: 'tab1' },
    ]);
    await waitForStatus('out', (s) => s.text === 'shm: 1 peer');
    const caught = waitFor('caught-tab1', (m) => (m.error as { message?: string })?.message?.includes('EMSGSIZE') ?? false);
    const got = collect('got', 1);
    node('out').receive({ payload: Buffer.alloc(2000) } as never);
    node('out').receive({ payload: 'small' } as never);
    const err = (await caught).error as { message: string };
    assert.match(err.message, /message of 2000 bytes is over the maximum message size of 1000 bytes/);
    assert.equal((await got)[0].payload, 'small');
  });

  it('provider efa without an EFA device: red status and a clear error, no crash', async function () {
    if (hasEfaDevice()) this.skip(); // the no-EFA behaviour is for machines without one
    requireSystem(this, 'libfabric', hasLibfabric(), INSTALL);
    const port = await freePort();
    await loadRdma([TAB, { id: 'out', type: 'spawn-rdma-out', z: 'tab1', provider: 'efa', port, wires: [] }]);
    const last = statusHistory('out').slice(-1)[0];
    assert.equal(last.text, 'provider efa not available: no EFA device (fi_getinfo: No data available)');
  });

  it('provider auto without EFA falls back to ZeroMQ over TCP with a warning, and messages flow', async function () {
    if (hasEfaDevice()) this.skip(); // the no-EFA behaviour is for machines without one
    requireSystem(this, 'libfabric', hasLibfabric(), INSTALL);
    const port = await freePort();
    await loadRdma([
      TAB,
      { id: 'out', type: 'spawn-rdma-out', z: 'tab1', addr: '127.0.0.1', port, wires: [] },
      { id: 'in', type: 'spawn-efa-in', z: 'tab1', endpoints: `tcp://127.0.0.1:${port}`, wires: [['got']] },
      { id: 'got', type: 'helper', z: 'tab1' },
    ]);
    const warn = node('out').warn as unknown as { getCalls(): Array<{ args: [string] }> };
    const warned = warn.getCalls().map((c) => String(c.args[0]));
    assert.match(warned[0], /^provider efa not available: no EFA device .*; provider auto falls back to ZeroMQ over TCP \(push, listening on port \d+\)/);
    await waitForStatus('out', (s) => s.text === 'zmq fallback: 1 peer');
    const got = collect('got', 100);
    for (let i = 0; i < 100; i++) node('out').receive({ payload: i } as never);
    assert.deepEqual(
      (await got).map((m) => m.payload),
      Array.from({ length: 100 }, (_, i) => i),
    );
  });

  it('mismatched providers (shm and tcp): both ends say so', async function () {
    requireSystem(this, 'libfabric', hasLibfabric(), INSTALL);
    const port = await freePort();
    await loadRdma([
      TAB,
      ...catcher(),
      { id: 'out', type: 'spawn-rdma-out', z: 'tab1', provider: 'shm', addr: '127.0.0.1', port, wires: [] },
      { id: 'in', type: 'spawn-efa-in', z: 'tab1', provider: 'tcp', endpoints: `tcp://127.0.0.1:${port}`, wires: [] },
    ]);
    const m = await waitFor('caught-tab1', (x) => String(x.payload).includes('provider mismatch'));
    assert.match(String(m.payload), /provider mismatch: rdma out on 127\.0\.0\.1:\d+ uses shm, the receiver at .* uses tcp;ofi_rxm; choose the same provider on both ends/);
  });
});

describe('rdma out → efa in between two Node-RED runtimes in separate processes', function () {
  this.timeout(120_000);

  for (const provider of ['shm', 'tcp'] as const) {
    it(`${provider}: 20,000 messages of 64 KiB arrive complete and in order; both runtimes stop cleanly on SIGTERM`, async function () {
      requireSystem(this, 'libfabric', hasLibfabric(), INSTALL);
      const N = 20_000;
      const port = await freePort();
      const producer = tabFlow('producer', [
        { id: 'src', type: 'seq-source', count: N, size: 65536, kind: 'buffer', window: 256, wires: [['out']] },
        { id: 'out', type: 'spawn-rdma-out', provider, addr: '127.0.0.1', port },
      ]);
      const consumer = tabFlow('consumer', [
        { id: 'in', type: 'spawn-efa-in', provider, endpoints: `tcp://127.0.0.1:${port}`, wires: [['sink']] },
        { id: 'sink', type: 'seq-sink', expect: N, label: 'sink' },
      ]);
      const c = await startChildRuntime(consumer, 'rdma-consumer');
      const p = await startChildRuntime(producer, 'rdma-producer');
      try {
        const r = await c.waitForReport((x) => x.done, 90_000);
        assert.equal(r.count, N);
        assert.equal(r.outOfOrder, 0, r.firstProblem);
        assert.equal(r.bytes, N * 65536);
      } finally {
        assert.equal(await p.stop(10_000), 0, `producer exit code\n${p.output()}`);
        assert.equal(await c.stop(10_000), 0, `consumer exit code\n${c.output()}`);
      }
    });
  }

  it('without libfabric: auto falls back to ZeroMQ on both ends and messages flow; tcp says libfabric is not installed', async function () {
    const N = 2000;
    const [port, other] = [await freePort(), await freePort()];
    const env = { SPAWN_LIBFABRIC: '/nonexistent/libfabric.so.1' };
    const producer = tabFlow('producer', [
      { id: 'src', type: 'seq-source', count: N, size: 100, kind: 'buffer', window: 256, startDelay: 500, wires: [['out']] },
      { id: 'out', type: 'spawn-rdma-out', addr: '127.0.0.1', port },
      { id: 'strict', type: 'spawn-rdma-out', provider: 'tcp', addr: '127.0.0.1', port: other },
    ]);
    const consumer = tabFlow('consumer', [
      { id: 'in', type: 'spawn-efa-in', endpoints: `tcp://127.0.0.1:${port}`, wires: [['sink']] },
      { id: 'sink', type: 'seq-sink', expect: N, label: 'sink' },
    ]);
    const c = await startChildRuntime(consumer, 'nofabric-consumer', { env });
    const p = await startChildRuntime(producer, 'nofabric-producer', { env });
    try {
      const r = await c.waitForReport((x) => x.done, 60_000);
      assert.deepEqual([r.count, r.outOfOrder], [N, 0]);
      assert.match(p.output(), /libfabric is not installed: looked in \/nonexistent\/libfabric\.so\.1 .*; provider auto falls back to ZeroMQ over TCP \(push, listening on port \d+\)/);
      assert.match(c.output(), /provider auto falls back to ZeroMQ over TCP \(pull, connecting to tcp:\/\/127\.0\.0\.1:\d+\)/);
      assert.match(p.output(), /\[error\] \[spawn-rdma-out:strict\] libfabric is not installed: looked in \/nonexistent\/libfabric\.so\.1 .*apt-get install libfabric1/);
    } finally {
      assert.equal(await p.stop(10_000), 0, `producer exit code\n${p.output()}`);
      assert.equal(await c.stop(10_000), 0, `consumer exit code\n${c.output()}`);
    }
  });
});
