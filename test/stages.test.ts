import { strict as assert } from 'assert';
import { collect, freePort, load, node, startServer, stopServer, unload, waitForStatus } from './support/nr';

/**
 * A whole pipeline deployed in one Node-RED (as from the editor): input nodes name their source
 * stage, and with no peer-discovery file the source is found on 127.0.0.1 at the port of its
 * matching output node.
 */

// eslint-disable-next-line @typescript-eslint/no-var-requires
const stageModule = require('../nodes/stage/stage');

describe('stages deployed whole in one runtime', function () {
  before(startServer);
  after(stopServer);
  afterEach(unload);

  it('a pull naming its source stage streams from that stage\'s push', async function () {
    assert.equal(process.env.SPAWN_PEERS_FILE, undefined, 'no peer file in this test');
    const port = await freePort();
    const port2 = await freePort();
    await load(
      [
        { id: 'tabA', type: 'tab', label: 'Ingest Stage' },
        { id: 'tabB', type: 'tab', label: 'consumer' },
        { id: 'stA', type: 'spawn-stage', z: 'tabA', wires: [] },
        { id: 'push', type: 'spawn-push', z: 'tabA', port, wires: [] },
        { id: 'pub', type: 'spawn-pub', z: 'tabA', port: port2, wires: [] },
        { id: 'stB', type: 'spawn-stage', z: 'tabB', stageId: 'consumer', wires: [] },
        { id: 'pull', type: 'spawn-pull', z: 'tabB', sourceStage: 'ingest-stage', wires: [['out']] },
        { id: 'out', type: 'helper', z: 'tabB' },
      ],
      [stageModule],
    );
    await waitForStatus('stA', (s) => s.text === 'stage ingest-stage');
    await waitForStatus('pull', (s) => s.text === 'tcp: 1 peer');
    const got = collect('out', 1000);
    for (let i = 0; i < 1000; i++) node('push').receive({ payload: { i } } as never);
    const msgs = await got;
    assert.deepEqual(
      msgs.map((m) => (m.payload as { i: number }).i),
      Array.from({ length: 1000 }, (_, i) => i),
    );
  });

  it('names the problem when the source stage is unknown or has no matching output', async function () {
    await load(
      [
        { id: 'tabA', type: 'tab', label: 'a' },
        { id: 'stA', type: 'spawn-stage', z: 'tabA', wires: [] },
        { id: 'push', type: 'spawn-push', z: 'tabA', port: 6001, wires: [] },
        { id: 'sub', type: 'spawn-sub', z: 'tabA', sourceStage: 'a', wires: [[]] },
        { id: 'pull', type: 'spawn-pull', z: 'tabA', sourceStage: 'nowhere', wires: [[]] },
      ],
      [stageModule],
    );
    await waitForStatus('sub', (s) => s.fill === 'red' && s.text === 'source stage "a" has no pub output for this sub to read from');
    await waitForStatus('pull', (s) => s.fill === 'red' && s.text === 'source stage "nowhere" does not exist (stages: a)');
  });
});
