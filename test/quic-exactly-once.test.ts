import { strict as assert } from 'assert';
import { startChildRuntime, tabFlow } from './support/child-runtime';
import { streamAutoAcrossZones } from './support/auto-pipeline';
import { freeUdpPort, quicIdentities } from './support/quic';

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
    await streamAutoAcrossZones('eo-auto', N, EO);
  });
});
