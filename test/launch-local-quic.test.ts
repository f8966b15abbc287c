import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TEST_NODES_DIR } from './support/child-runtime';
import { freeUdpPort } from './support/quic';

/**
 * `spawn-red launch` (local provider) of a two-stage flow with transport auto across two regions:
 * the launcher makes the pipeline's CA and each instance's certificate, both ends choose QUIC, and
 * the stream arrives complete. No private key ends up in the flow, the export or a log.
 */

const CLI = path.resolve(__dirname, '..', '..', 'bin', 'spawn-red.js');
const N = 5000;

describe('spawn-red launch (local) with QUIC', function () {
  this.timeout(120_000);
  let dir: string;
  let home: string;
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, SPAWN_RED_HOME: home, SPAWN_RED_NODES_DIRS: TEST_NODES_DIR } });
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-launch-quic-'));
    home = path.join(dir, 'home');
  });
  afterEach(() => {
    cli('down', 'quic-regions');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('auto picks QUIC between stages in two regions, with a pipeline CA the launcher made', async function () {
    const port = await freeUdpPort();
    const report = path.join(dir, 'consumer.json');
    const flow = [
      { id: 'tP', type: 'tab', label: 'producer' },
      { id: 'tC', type: 'tab', label: 'consumer' },
      { id: 'stP', type: 'spawn-stage', z: 'tP', stageId: 'producer', instanceType: 'c5.xlarge', instanceCount: 1, region: 'us-east-1', wires: [] },
      { id: 'src', type: 'seq-source', z: 'tP', count: N, size: 300, kind: 'buffer', window: 1000, wires: [['push']] },
      { id: 'push', type: 'spawn-push', z: 'tP', port, transport: 'auto', wires: [] },
      { id: 'stC', type: 'spawn-stage', z: 'tC', stageId: 'consumer', instanceType: 'c5.xlarge', instanceCount: 1, region: 'eu-west-1', wires: [] },
      { id: 'pull', type: 'spawn-pull', z: 'tC', sourceStage: 'producer', transport: 'auto', wires: [['sinkC']] },
      { id: 'sinkC', type: 'seq-sink', z: 'tC', expect: N, label: 'consumer', reportFile: report, wires: [] },
    ];
    const flowFile = path.join(dir, 'quic-regions.json');
    fs.writeFileSync(flowFile, JSON.stringify(flow));
    const g = cli('graph', flowFile);
    assert.equal(g.status, 0, g.stderr);
    assert.match(g.stdout, /producer ──zmq push→pull :\d+ \[auto→quic \(across regions \(us-east-1, eu-west-1\)\)\]──▶ consumer/);

    const r = cli('launch', flowFile, '--detached');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const deadline = Date.now() + 60_000;
    let done: { done: boolean; count: number; outOfOrder: number } | undefined;
    while (!done?.done) {
      if (Date.now() > deadline) throw new Error(`no complete report: ${JSON.stringify(done)}\n${cli('logs', 'quic-regions').stdout}`);
      await new Promise((res) => setTimeout(res, 100));
      done = fs.existsSync(report) ? JSON.parse(fs.readFileSync(report, 'utf8')) : undefined;
    }
    assert.equal(done.count, N);
    assert.equal(done.outOfOrder, 0);

    const pipelineDir = path.join(home, 'pipelines', 'quic-regions');
    const mode = (f: string) => fs.statSync(f).mode & 0o777;
    assert.equal(mode(path.join(pipelineDir, 'quic-ca', 'ca-key.pem')), 0o600);
    for (const inst of ['producer-0', 'consumer-0']) {
      assert.equal(mode(path.join(pipelineDir, inst, 'quic', 'key.pem')), 0o600);
      assert.ok(!fs.existsSync(path.join(pipelineDir, inst, 'quic', 'ca-key.pem')));
      const peers = JSON.parse(fs.readFileSync(path.join(pipelineDir, inst, 'pipeline-peers.json'), 'utf8'));
      assert.deepEqual(peers.all_stages.producer[0].availability_zone, 'us-east-1-local');
    }
    const logs = cli('logs', 'quic-regions').stdout;
    assert.doesNotMatch(logs, /PRIVATE KEY/);
    assert.doesNotMatch(fs.readFileSync(path.join(pipelineDir, 'producer-0', 'flows.json'), 'utf8'), /PRIVATE KEY/);
    const exported = cli('export', flowFile);
    assert.doesNotMatch(exported.stdout, /PRIVATE KEY/);
  });
});
