import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ChildRuntime, startChildRuntime, tabFlow } from '../support/child-runtime';
import { freeUdpPort, quicIdentities, startLossyRelay } from '../support/quic';
import { assertOnceAcrossRestart, readSeqLog, waitUntil } from './support';

/**
 * Exactly-once over QUIC between real Node-RED runtimes in child processes: a consumer SIGKILLed
 * mid-stream and restarted, and a connection broken mid-stream by a lossy relay that goes dark.
 * Every sequence-numbered message arrives, in order.
 */

const EO = { transport: 'quic', delivery: 'exactly-once', peerTimeout: 1500, reconnect: 50 };

/** `consumerBinds`: the pull listens and the push dials it (the other way round by default). */
function producerFlow(port: number, n: number, consumerBinds = false) {
  const where = consumerBinds ? { connection: 'connect', endpoints: `tcp://127.0.0.1:${port}` } : { addr: '127.0.0.1', port };
  return tabFlow('producer', [
    { id: 'src', type: 'seq-source', count: n, size: 100, kind: 'buffer', window: 2000, wires: [['push']] },
    { id: 'push', type: 'spawn-push', ...where, ...EO },
  ]);
}

function consumerFlow(port: number, n: number, logFile: string, busyMicros = 0, consumerBinds = false) {
  const where = consumerBinds ? { connection: 'bind', addr: '127.0.0.1', port } : { endpoints: `tcp://127.0.0.1:${port}` };
  return tabFlow('consumer', [
    { id: 'pull', type: 'spawn-pull', ...where, ...EO, wires: [['sink']] },
    { id: 'sink', type: 'seq-sink', expect: n, label: 'sink', ordering: 'increasing', busyMicros, logFile },
  ]);
}

describe('faults: exactly-once over QUIC, restarts and broken connections', function () {
  this.timeout(120_000);
  let dir: string;
  let certs: string[];
  const running: ChildRuntime[] = [];
  before(() => (certs = quicIdentities(3, 'faults')));
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-faults-quic-'))));
  afterEach(async () => {
    await Promise.all(running.splice(0).map((r) => r.stop(5000)));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const start = async (flow: object[], name: string, cert: string, userDir?: string) => {
    const r = await startChildRuntime(flow, name, { env: { SPAWN_QUIC_DIR: cert }, userDir });
    running.push(r);
    return r;
  };

  for (const consumerBinds of [false, true]) {
    it(`a consumer ${consumerBinds ? '(listening; the producer dials it) ' : ''}killed with SIGKILL mid-stream and restarted: all N arrive, in order, once`, async function () {
      const N = 20_000;
      const port = await freeUdpPort();
      const logA = path.join(dir, 'a.seq');
      const logB = path.join(dir, 'b.seq');
      // 150 µs of CPU per message: the consumer takes about 3 s, so the kill lands mid-stream.
      // The restarted consumer gets the killed one's user directory, as a restarted instance does:
      // its watermark file says what the killed one had finished.
      const userDir = path.join(dir, 'consumer-user');
      const a = await start(consumerFlow(port, N, logA, 150, consumerBinds), 'quic-consumer-a', certs[1], userDir);
      const producer = await start(producerFlow(port, N, consumerBinds), 'quic-producer', certs[0]);
      await waitUntil('the first consumer got a quarter', () => readSeqLog(logA).length >= N / 4, 30_000);
      a.proc.kill('SIGKILL');
      await new Promise((r) => a.proc.once('exit', r));
      const seenA = readSeqLog(logA);
      assert.ok(seenA.length < N, 'the kill came before the end');
      // A listening consumer comes back on the same UDP port: the producer's connection went silent,
      // was closed after the peer timeout, and is dialled again.
      await start(consumerFlow(port, N, logB, 0, consumerBinds), 'quic-consumer-b', certs[2], userDir);
      await waitUntil('every message arrived', () => seenA.length + readSeqLog(logB).length >= N, 60_000);
      const seenB = readSeqLog(logB);
      assertOnceAcrossRestart(seenA, seenB, N);
      // Nothing comes later: once the producer has stopped (it waits for its acknowledgements first), nothing can.
      await producer.stop();
      assert.equal(readSeqLog(logB).length, seenB.length, 'no late duplicates');
    });
  }

  it('a connection broken mid-stream through a lossy relay: complete, in order, once', async function () {
    const N = 20_000;
    const port = await freeUdpPort();
    const log = path.join(dir, 'relay.seq');
    const p = await start(producerFlow(port, N), 'quic-producer', certs[0]);
    const relay = await startLossyRelay(port, { drop: 0.02, delay: 0.02, maxDelayMs: 5, seed: 99 });
    try {
      await start(consumerFlow(relay.port, N, log, 100), 'quic-consumer', certs[1]);
      await waitUntil('a share arrived', () => readSeqLog(log).length >= N / 5, 30_000);
      // Dark for longer than the peer timeout: both ends give the connection up; the pull dials again.
      relay.blackout(2500);
      await waitUntil('every message arrived', () => readSeqLog(log).length >= N, 60_000);
      assert.deepEqual(readSeqLog(log), Array.from({ length: N }, (_, i) => i));
      // The producer noticed: the link went silent with messages unacknowledged, and was continued.
      assert.match(p.output(), /EPEERLOST|silent for/);
      await p.stop();
      assert.equal(readSeqLog(log).length, N, 'no late duplicates');
    } finally {
      await relay.close();
    }
  });
});
