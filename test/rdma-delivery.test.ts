import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { openFabricIn } from '../native/fabric/stream';
import { ChildRuntime, startChildRuntime, tabFlow } from './support/child-runtime';
import { hasLibfabric, LIBFABRIC_INSTALL, hasEfaDevice } from './support/libfabric';
import { collect, FlowNode, load, node, startServer, stopServer, unload, waitFor, waitForStatus } from './support/nr';
import { freePort } from './support/ports';
import { requireSystem } from './support/system';
import { assertOnceAcrossRestart, readSeqLog, waitUntil } from './faults/support';

/**
 * Exactly-once delivery over RDMA (rdma out → efa in, native/delivery/fabric-links.ts) over real
 * libfabric (tcp and shm providers): in a Node-RED runtime, and between runtimes in child
 * processes where the receiver is SIGKILLed mid-stream and restarted.
 */

// eslint-disable-next-line @typescript-eslint/no-var-requires
const rdmaModules = [require('../nodes/rdma-out/rdma-out'), require('../nodes/efa-in/efa-in')];
const TAB = { id: 'tab1', type: 'tab', label: 'rdma' };
const EO = { delivery: 'exactly-once' };
const catcher: FlowNode[] = [
  { id: 'catcher', type: 'catch', z: 'tab1', scope: null, uncaught: false, wires: [['caught']] },
  { id: 'caught', type: 'helper', z: 'tab1' },
];

describe('exactly-once over rdma out → efa in', function () {
  this.timeout(60_000);
  before(startServer);
  after(stopServer);
  afterEach(unload);

  for (const provider of ['shm', 'tcp'] as const) {
    it(`${provider}: 3000 typed messages, some larger than a chunk, arrive once and in order; status says exactly-once`, async function () {
      requireSystem(this, 'libfabric', hasLibfabric(), LIBFABRIC_INSTALL);
      const port = await freePort();
      await load(
        [
          TAB,
          { id: 'out', type: 'spawn-rdma-out', z: 'tab1', provider, addr: '127.0.0.1', port, wholeMsg: true, ...EO, wires: [] },
          { id: 'in', type: 'spawn-efa-in', z: 'tab1', provider, endpoints: `tcp://127.0.0.1:${port}`, ...EO, wires: [['got']] },
          { id: 'got', type: 'helper', z: 'tab1' },
        ],
        rdmaModules,
      );
      const name = provider === 'tcp' ? 'tcp;ofi_rxm' : 'shm';
      await waitForStatus('out', (s) => s.text === `${name}: 1 peer, exactly-once` && s.fill === 'green');
      await waitForStatus('in', (s) => s.text === `${name}: 1 peer, exactly-once`);
      const got = collect('got', 3000, () => true, 30_000);
      const big = Buffer.alloc(1_500_000, 7); // over a 1 MiB chunk: split and rebuilt
      for (let i = 0; i < 3000; i++) {
        const payload = i % 4 === 0 ? i : i % 4 === 1 ? `m${i}` : i % 4 === 2 ? { i } : i % 1000 === 3 ? big : Buffer.from([i & 0xff]);
        node('out').receive({ payload, seq: i } as never);
      }
      const msgs = await got;
      assert.deepEqual(
        msgs.map((m) => m.seq),
        Array.from({ length: 3000 }, (_, i) => i),
      );
      assert.equal(msgs[5].payload, 'm5');
      assert.deepEqual(msgs[6].payload, { i: 6 });
      assert.ok((msgs[1003].payload as Buffer).equals(big));
    });
  }

  it('provider auto without EFA: both ends fall back to ZeroMQ in exactly-once mode, and messages flow', async function () {
    if (hasEfaDevice()) this.skip(); // the no-EFA behaviour is for machines without one
    requireSystem(this, 'libfabric', hasLibfabric(), LIBFABRIC_INSTALL);
    const port = await freePort();
    await load(
      [
        TAB,
        { id: 'out', type: 'spawn-rdma-out', z: 'tab1', addr: '127.0.0.1', port, ...EO, wires: [] },
        { id: 'in', type: 'spawn-efa-in', z: 'tab1', endpoints: `tcp://127.0.0.1:${port}`, ...EO, wires: [['got']] },
        { id: 'got', type: 'helper', z: 'tab1' },
      ],
      rdmaModules,
    );
    const warn = node('out').warn as unknown as { getCalls(): Array<{ args: [string] }> };
    assert.match(String(warn.getCalls()[0].args[0]), /provider auto falls back to ZeroMQ over TCP \(push, listening on port \d+\)/);
    // The ZeroMQ exactly-once links (a ROUTER and a DEALER underneath), as for push/pull.
    await waitForStatus('out', (s) => s.text === 'zmq fallback: 1 peer, exactly-once');
    await waitForStatus('in', (s) => s.text === 'zmq fallback: 1 peer, exactly-once');
    const got = collect('got', 500);
    for (let i = 0; i < 500; i++) node('out').receive({ payload: i } as never);
    assert.deepEqual(
      (await got).map((m) => m.payload),
      Array.from({ length: 500 }, (_, i) => i),
    );
  });

  it('a receiver whose fabric address is none (3 bytes) is refused, and a good receiver still gets in after it', async function () {
    requireSystem(this, 'libfabric', hasLibfabric(), LIBFABRIC_INSTALL);
    const port = await freePort();
    await load([TAB, ...catcher, { id: 'out', type: 'spawn-rdma-out', z: 'tab1', provider: 'tcp', addr: '127.0.0.1', port, wires: [] }], rdmaModules);
    await waitForStatus('out', (s) => /waiting for receivers/.test(String(s.text)));
    const refused = waitFor('caught', (m) => /its fabric address is not usable/.test(String(m.payload)));
    await new Promise<void>((resolve) => {
      const hello = { t: 'hello', v: 1, address: Buffer.from([0xff, 0x9f, 0x44]).toString('base64'), provider: 'tcp;ofi_rxm', id: 1, chunk: 65536, credits: 16 };
      const s = net.connect(port, '127.0.0.1', () => s.write(JSON.stringify(hello) + '\n'));
      s.resume(); // read the refusal and the end, so that the socket closes
      s.on('close', () => resolve());
      s.on('error', () => resolve());
    });
    assert.match(String((await refused).payload), /receiver 127\.0\.0\.1:\d+: its fabric address is not usable: fi_av_insert: /);
    // libfabric's tcp address vector, once given a sockaddr of an unknown family, refused every
    // later address (EINVAL): no receiver could connect any more.
    const got: unknown[] = [];
    const problems: string[] = [];
    const inn = openFabricIn(
      { provider: 'tcp', format: 'spawn', maxMessageSize: 0, connect: [{ host: '127.0.0.1', port }], reconnectMs: 50 },
      { message: (m) => got.push(m.payload), status: () => undefined, problem: (e) => problems.push(e.message) },
    );
    try {
      await waitForStatus('out', (s) => s.text === 'tcp;ofi_rxm: 1 peer');
      node('out').receive({ payload: 'after the bogus one' } as never);
      await waitUntil('the good receiver got the message', () => got.length === 1, 10_000);
      assert.deepEqual([got, problems], [['after the bogus one'], []]);
    } finally {
      await inn.close(0);
    }
  });

  it('an efa in at most once and an rdma out exactly once: both ends report the mismatch', async function () {
    requireSystem(this, 'libfabric', hasLibfabric(), LIBFABRIC_INSTALL);
    const port = await freePort();
    await load(
      [
        TAB,
        ...catcher,
        { id: 'out', type: 'spawn-rdma-out', z: 'tab1', provider: 'tcp', addr: '127.0.0.1', port, ...EO, wires: [] },
        { id: 'in', type: 'spawn-efa-in', z: 'tab1', provider: 'tcp', endpoints: `tcp://127.0.0.1:${port}`, wires: [['got']] },
        { id: 'got', type: 'helper', z: 'tab1' },
      ],
      rdmaModules,
    );
    const fromOut = waitFor('caught', (m) => /delivery mismatch/.test(String(m.payload)) && (m.error as { source?: { id?: string } })?.source?.id === 'out');
    const fromIn = waitFor('caught', (m) => /delivery mismatch/.test(String(m.payload)) && (m.error as { source?: { id?: string } })?.source?.id === 'in');
    assert.match(String((await fromOut).payload), /delivery mismatch: rdma out on 127\.0\.0\.1:\d+ is exactly-once, the receiver at 127\.0\.0\.1:\d+ is at-most-once; choose the same delivery on both ends/);
    assert.match(String((await fromIn).payload), /rdma out at 127\.0\.0\.1:\d+ refused this efa in: delivery mismatch/);
  });
});

describe('exactly-once over RDMA between runtimes: a receiver SIGKILLed mid-stream and restarted', function () {
  this.timeout(120_000);
  let dir: string;
  const running: ChildRuntime[] = [];
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-rdma-eo-'))));
  afterEach(async () => {
    await Promise.all(running.splice(0).map((r) => r.stop(5000)));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const start = async (flow: object[], name: string, userDir?: string) => {
    const r = await startChildRuntime(flow, name, { userDir });
    running.push(r);
    return r;
  };

  for (const provider of ['tcp', 'shm'] as const) {
    it(`${provider}: all N arrive, in order, once`, async function () {
      requireSystem(this, 'libfabric', hasLibfabric(), LIBFABRIC_INSTALL);
      const N = 20_000;
      const port = await freePort();
      const settings = { provider, ...EO, peerTimeout: 1500, reconnect: 50 };
      const consumer = (log: string, busyMicros: number) =>
        tabFlow('consumer', [
          { id: 'in', type: 'spawn-efa-in', endpoints: `tcp://127.0.0.1:${port}`, ...settings, wires: [['sink']] },
          { id: 'sink', type: 'seq-sink', expect: N, label: 'sink', ordering: 'increasing', busyMicros, logFile: log },
        ]);
      const producer = tabFlow('producer', [
        { id: 'src', type: 'seq-source', count: N, size: 1000, kind: 'buffer', window: 2000, wires: [['out']] },
        { id: 'out', type: 'spawn-rdma-out', addr: '127.0.0.1', port, ...settings },
      ]);
      const logA = path.join(dir, 'a.seq');
      const logB = path.join(dir, 'b.seq');
      // 150 µs of CPU per message: the consumer takes about 3 s, so the kill lands mid-stream.
      // The restarted consumer gets the killed one's user directory, as a restarted instance does:
      // its watermark file says what the killed one had finished.
      const userDir = path.join(dir, 'consumer-user');
      const a = await start(consumer(logA, 150), 'rdma-consumer-a', userDir);
      const p = await start(producer, 'rdma-producer');
      await waitUntil('the first consumer got a quarter', () => readSeqLog(logA).length >= N / 4, 30_000);
      a.proc.kill('SIGKILL');
      await new Promise((r) => a.proc.once('exit', r));
      const seenA = readSeqLog(logA);
      assert.ok(seenA.length < N, 'the kill came before the end');
      await start(consumer(logB, 0), 'rdma-consumer-b', userDir);
      await waitUntil('every message arrived', () => seenA.length + readSeqLog(logB).length >= N, 60_000).catch((e) => {
        throw new Error(`${(e as Error).message}: ${seenA.length} + ${readSeqLog(logB).length}\n${p.output()}`);
      });
      const seenB = readSeqLog(logB);
      assertOnceAcrossRestart(seenA, seenB, N);
      assert.match(p.output(), /EPEERLOST|is gone/, 'the producer reported the lost receiver');
    });
  }
});
