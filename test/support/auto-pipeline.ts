import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { startChildRuntime } from './child-runtime';
import { freeUdpPort, quicIdentities, twoZonePeerFiles } from './quic';

/**
 * Producer → consumer stages, push → pull with transport `auto`, in two availability zones (so
 * `auto` resolves to QUIC), each stage a runtime in a child process on its own loopback address:
 * `n` messages must arrive complete and in order, and nothing may listen on the TCP port of the
 * same number (QUIC it was). `pattern` is merged into both the push and the pull (e.g. a delivery mode).
 */
export async function streamAutoAcrossZones(label: string, n: number, pattern: Record<string, unknown> = {}): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `spawn-red-${label}-`));
  const [pDir, cDir] = quicIdentities(2, label);
  const port = await freeUdpPort();
  const peerFiles = twoZonePeerFiles(dir, label);
  const flow = [
    { id: 'tabP', type: 'tab', label: 'Producer' },
    { id: 'tabC', type: 'tab', label: 'Consumer' },
    { id: 'stP', type: 'spawn-stage', z: 'tabP', stageId: 'producer', instanceCount: 1, wires: [] },
    { id: 'src', type: 'seq-source', z: 'tabP', count: n, size: 500, kind: 'buffer', wires: [['push']] },
    { id: 'push', type: 'spawn-push', z: 'tabP', port, transport: 'auto', ...pattern, wires: [] },
    { id: 'stC', type: 'spawn-stage', z: 'tabC', stageId: 'consumer', instanceCount: 1, wires: [] },
    { id: 'pull', type: 'spawn-pull', z: 'tabC', sourceStage: 'producer', endpoints: '', transport: 'auto', ...pattern, wires: [['sinkC']] },
    { id: 'sinkC', type: 'seq-sink', z: 'tabC', expect: n, label: 'sink', wires: [] },
  ];
  const c = await startChildRuntime(flow, `${label}-consumer`, { stage: 'consumer', peers: peerFiles.consumer, env: { SPAWN_BIND_ADDR: '127.0.0.3', SPAWN_QUIC_DIR: cDir } });
  const p = await startChildRuntime(flow, `${label}-producer`, { stage: 'producer', peers: peerFiles.producer, env: { SPAWN_BIND_ADDR: '127.0.0.2', SPAWN_QUIC_DIR: pDir } });
  try {
    const r = await c.waitForReport((x) => x.done, 60_000);
    assert.equal(r.count, n);
    assert.equal(r.outOfOrder, 0, r.firstProblem);
    const tcp = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.2');
      s.once('connect', () => (s.destroy(), resolve('connected')));
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    assert.equal(tcp, 'ECONNREFUSED', 'a TCP listener on the port: auto did not resolve to QUIC');
  } finally {
    assert.equal(await p.stop(), 0, p.output());
    assert.equal(await c.stop(), 0, c.output());
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
