import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { startChildRuntime, tabFlow } from './support/child-runtime';
import { freeUdpPort, quicIdentities, twoZonePeerFiles } from './support/quic';

/**
 * Exactly-once over QUIC between two Node-RED runtimes in child processes: router/dealer both
 * ways, and transport `auto` where it resolves to QUIC. (push → pull with a SIGKILLed consumer and
 * a broken connection: test/faults/quic-restarts.fault.ts.)
 */

const N = 5000;
const EO = { delivery: 'exactly-once' };

describe('exactly-once over QUIC between two Node-RED runtimes', function () {
  this.timeout(120_000);

  it('dealer → router → dealer: each request answered to its identity, in order, once', async function () {
    const [rDir, dDir] = quicIdentities(2, 'eo-rd');
    const port = await freeUdpPort();
    const router = await startChildRuntime(tabFlow('server', [{ id: 'router', type: 'spawn-router', transport: 'quic', addr: '127.0.0.1', port, ...EO, wires: [['router']] }]), 'eo-router', {
      env: { SPAWN_QUIC_DIR: rDir },
    });
    const dealer = await startChildRuntime(
      tabFlow('client', [
        { id: 'src', type: 'seq-source', count: N, size: 200, kind: 'buffer', window: 1000, wires: [['dealer']] },
        { id: 'dealer', type: 'spawn-dealer', transport: 'quic', identity: 'worker-7', endpoints: `tcp://127.0.0.1:${port}`, ...EO, wires: [['sink']] },
        { id: 'sink', type: 'seq-sink', expect: N, label: 'sink' },
      ]),
      'eo-dealer',
      { env: { SPAWN_QUIC_DIR: dDir } },
    );
    try {
      const r = await dealer.waitForReport((x) => x.done, 60_000);
      assert.equal(r.count, N);
      assert.equal(r.outOfOrder, 0, r.firstProblem);
    } finally {
      assert.equal(await dealer.stop(), 0, dealer.output());
      assert.equal(await router.stop(), 0, router.output());
    }
    assert.doesNotMatch(dealer.output() + router.output(), /EPROTO|EBADFRAME|undelivered/);
  });

  it('transport auto that resolves to QUIC (stages in two zones) carries exactly-once', async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-eo-auto-'));
    const [pDir, cDir] = quicIdentities(2, 'eo-auto');
    const port = await freeUdpPort();
    const peerFiles = twoZonePeerFiles(dir, 'eo-auto');
    const flow = [
      { id: 'tabP', type: 'tab', label: 'Producer' },
      { id: 'tabC', type: 'tab', label: 'Consumer' },
      { id: 'stP', type: 'spawn-stage', z: 'tabP', stageId: 'producer', instanceCount: 1, wires: [] },
      { id: 'src', type: 'seq-source', z: 'tabP', count: N, size: 500, kind: 'buffer', wires: [['push']] },
      { id: 'push', type: 'spawn-push', z: 'tabP', port, transport: 'auto', ...EO, wires: [] },
      { id: 'stC', type: 'spawn-stage', z: 'tabC', stageId: 'consumer', instanceCount: 1, wires: [] },
      { id: 'pull', type: 'spawn-pull', z: 'tabC', sourceStage: 'producer', endpoints: '', transport: 'auto', ...EO, wires: [['sinkC']] },
      { id: 'sinkC', type: 'seq-sink', z: 'tabC', expect: N, label: 'sink', wires: [] },
    ];
    const c = await startChildRuntime(flow, 'eo-auto-consumer', { stage: 'consumer', peers: peerFiles.consumer, env: { SPAWN_BIND_ADDR: '127.0.0.3', SPAWN_QUIC_DIR: cDir } });
    const p = await startChildRuntime(flow, 'eo-auto-producer', { stage: 'producer', peers: peerFiles.producer, env: { SPAWN_BIND_ADDR: '127.0.0.2', SPAWN_QUIC_DIR: pDir } });
    try {
      const r = await c.waitForReport((x) => x.done, 60_000);
      assert.equal(r.count, N);
      assert.equal(r.outOfOrder, 0, r.firstProblem);
      // QUIC it was: nothing listens on the TCP port of the same number.
      const tcp = await new Promise<string>((resolve) => {
        const s = net.connect(port, '127.0.0.2');
        s.once('connect', () => (s.destroy(), resolve('connected')));
        s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      });
      assert.equal(tcp, 'ECONNREFUSED');
    } finally {
      assert.equal(await p.stop(), 0, p.output());
      assert.equal(await c.stop(), 0, c.output());
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
