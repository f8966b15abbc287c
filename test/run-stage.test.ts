import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { gcFlagsFor, gcModeFor } from '../launcher/gc-tuning';
import { PeerFile, PeerInfo } from '../native/peers';
import { ChildRuntime, startChildRuntime } from './support/child-runtime';
import { freePort } from './support/nr';

/**
 * `spawn-red run --flow --stage --peers`: stage instances as separate processes on their own
 * 127.0.0.x addresses, finding each other through hand-written peer-discovery files.
 */

const CLI = path.resolve(__dirname, '..', '..', 'bin', 'spawn-red.js');
const N = 10_000;

function peer(stage: string, stageIndex: number, index: number, ip: string): PeerInfo {
  return {
    stage_id: stage,
    stage_index: stageIndex,
    instance_id: `local-${stage}-${index}`,
    private_ip: ip,
    dns_name: `${stage}-${index}.test.spore.host`,
    state: 'running',
    index,
  };
}

function writePeerFile(dir: string, self: PeerInfo, all: Record<string, PeerInfo[]>, upstream: string[], downstream: string[]): string {
  const pick = (ids: string[]) => Object.fromEntries(ids.map((id) => [id, all[id]]));
  const file: PeerFile = {
    pipeline_id: 'test',
    stage_id: self.stage_id,
    stage_index: self.stage_index,
    instance_index: self.index,
    stage_peers: all[self.stage_id],
    upstream_stages: pick(upstream),
    downstream_stages: pick(downstream),
    all_stages: all,
  };
  const p = path.join(dir, `${self.stage_id}-${self.index}.json`);
  fs.writeFileSync(p, JSON.stringify(file, null, 2));
  return p;
}

function pipelineFlow(port: number, startFile = ''): object[] {
  return [
    { id: 'tabP', type: 'tab', label: 'Producer' },
    { id: 'tabC', type: 'tab', label: 'Consumer' },
    { id: 'stP', type: 'spawn-stage', z: 'tabP', stageId: '', instanceCount: 1, wires: [] },
    { id: 'src', type: 'seq-source', z: 'tabP', count: N, size: 64, kind: 'buffer', startFile, wires: [['push']] },
    { id: 'push', type: 'spawn-push', z: 'tabP', port, wires: [] },
    { id: 'stC', type: 'spawn-stage', z: 'tabC', stageId: 'consumer', instanceCount: 2, wires: [] },
    { id: 'pull', type: 'spawn-pull', z: 'tabC', sourceStage: 'producer', endpoints: '', wires: [['sink']] },
    { id: 'sink', type: 'seq-sink', z: 'tabC', expect: N, label: 'share', ordering: 'increasing', wires: [] },
  ];
}

describe('spawn-red run: one stage per process, peers from the peer-discovery file', function () {
  this.timeout(120_000);
  const children: ChildRuntime[] = [];
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-peers-'))));
  afterEach(async () => {
    const codes = await Promise.all(children.splice(0).map((c) => c.stop()));
    fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(codes.filter((c) => c !== 0), [], 'every stage process exits 0 on SIGTERM');
  });

  it(`a producer and two consumer instances on 127.0.0.x stream ${N} messages in round-robin shares that add up`, async function () {
    const port = await freePort();
    const startFile = path.join(dir, 'start');
    const flow = pipelineFlow(port, startFile);
    const all = {
      producer: [peer('producer', 0, 0, '127.0.0.2')],
      consumer: [peer('consumer', 1, 0, '127.0.0.3'), peer('consumer', 1, 1, '127.0.0.4')],
    };
    const consumerPeers = all.consumer.map((c) => writePeerFile(dir, c, all, ['producer'], []));
    const producerPeers = writePeerFile(dir, all.producer[0], all, [], ['consumer']);
    for (const [i, peers] of consumerPeers.entries()) {
      children.push(await startChildRuntime(flow, `consumer-${i}`, { stage: 'consumer', peers, env: { SPAWN_BIND_ADDR: all.consumer[i].private_ip } }));
    }
    const stats = path.join(dir, 'producer-stats.json');
    children.push(await startChildRuntime(flow, 'producer', { stage: 'producer', peers: producerPeers, env: { SPAWN_BIND_ADDR: '127.0.0.2', SPAWN_STATS_FILE: stats } }));
    // The source starts once both consumer instances are connected: a share each is then certain.
    await waitUntil(() => peersOf(stats, 'push') === 2, 20_000, () => fs.existsSync(stats) ? fs.readFileSync(stats, 'utf8') : 'no stats yet');
    fs.writeFileSync(startFile, '');
    const [c0, c1] = children;
    // Both consumers report every 500 ms; wait until their shares cover the stream.
    await waitUntil(() => (c0.latest('share')?.count ?? 0) + (c1.latest('share')?.count ?? 0) >= N, 60_000, () => JSON.stringify([c0.latest('share'), c1.latest('share')]));
    const shares = [c0.latest('share')!, c1.latest('share')!];
    assert.equal(shares[0].count + shares[1].count, N);
    assert.ok(shares[0].count > 0 && shares[1].count > 0, `both instances get a share: ${shares.map((s) => s.count)}`);
    assert.equal(shares[0].seqSum + shares[1].seqSum, (N * (N - 1)) / 2, 'every sequence number exactly once');
    for (const s of shares) assert.equal(s.outOfOrder, 0, s.firstProblem);
  });

  it('fails fast on an unknown stage, a missing peer file and a peer file of another stage', function () {
    const flowFile = path.join(dir, 'flows.json');
    fs.writeFileSync(flowFile, JSON.stringify(pipelineFlow(5555)));
    const run = (...args: string[]) => spawnSync(process.execPath, [CLI, 'run', '--flow', flowFile, ...args], { encoding: 'utf8', timeout: 20_000 });
    let r = run('--stage', 'nope');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /stage "nope" is not in the flow \(stages: producer, consumer\)/);
    r = run('--stage', 'consumer', '--peers', path.join(dir, 'missing.json'));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /peer file .*missing\.json does not exist/);
    const all = { producer: [peer('producer', 0, 0, '127.0.0.2')], consumer: [peer('consumer', 1, 0, '127.0.0.3')] };
    const other = writePeerFile(dir, all.producer[0], all, [], ['consumer']);
    r = run('--stage', 'consumer', '--peers', other);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /is for stage "producer", not "consumer"/);
  });

  it('marks the heap on the main thread on small machines (atomically where a node receives), as SPAWN_GC asks, and names a bad SPAWN_GC', function () {
    assert.equal(gcModeFor({}, 2), 'main-thread');
    assert.equal(gcModeFor({}, 4), 'main-thread');
    assert.equal(gcModeFor({}, 8), 'concurrent');
    assert.equal(gcModeFor({ SPAWN_GC: 'concurrent' }, 2), 'concurrent');
    assert.equal(gcModeFor({ SPAWN_GC: 'main-thread' }, 64), 'main-thread');
    // Atomic marking where receivers pace young collections; incremental in stages that only send
    // (their payloads die old).
    assert.deepEqual(gcFlagsFor('main-thread', ['spawn-pull', 'seq-sink']), ['--no-concurrent-marking', '--no-incremental-marking']);
    assert.deepEqual(gcFlagsFor('main-thread', ['spawn-pull', 'spawn-push']), ['--no-concurrent-marking', '--no-incremental-marking']);
    assert.deepEqual(gcFlagsFor('main-thread', ['spawn-efa-in', 'seq-sink']), ['--no-concurrent-marking', '--no-incremental-marking']);
    assert.deepEqual(gcFlagsFor('main-thread', ['seq-source', 'spawn-push']), ['--no-concurrent-marking']);
    assert.deepEqual(gcFlagsFor('main-thread', ['seq-source', 'spawn-rdma-out']), ['--no-concurrent-marking']);
    assert.deepEqual(gcFlagsFor('concurrent', ['spawn-pull']), []);
    const flowFile = path.join(dir, 'flows.json');
    fs.writeFileSync(flowFile, JSON.stringify(pipelineFlow(5555)));
    const r = spawnSync(process.execPath, [CLI, 'run', '--flow', flowFile, '--stage', 'consumer'], {
      encoding: 'utf8',
      timeout: 20_000,
      env: { ...process.env, SPAWN_GC: 'fast' },
    });
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /stage "consumer": SPAWN_GC must be main-thread or concurrent, not "fast"/);
  });

  it('sets the stage\'s malloc at start-up: a bad SPAWN_MALLOC fails it, naming the stage (test/malloc-tuning.test.ts: what the settings do)', function () {
    const flowFile = path.join(dir, 'flows.json');
    fs.writeFileSync(flowFile, JSON.stringify(pipelineFlow(5556)));
    const r = spawnSync(process.execPath, [CLI, 'run', '--flow', flowFile, '--stage', 'producer'], {
      encoding: 'utf8',
      timeout: 20_000,
      env: { ...process.env, SPAWN_MALLOC: 'small' },
    });
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /stage "producer": SPAWN_MALLOC must be streaming or default, not "small"/);
  });

  it('fails fast when the stage uses a node type that is not installed', function () {
    const flowFile = path.join(dir, 'flows.json');
    const flow = pipelineFlow(5555);
    flow.push({ id: 'odd', type: 'no-such-node', z: 'tabC', wires: [] });
    fs.writeFileSync(flowFile, JSON.stringify(flow));
    const r = spawnSync(process.execPath, [CLI, 'run', '--flow', flowFile, '--stage', 'consumer'], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, SPAWN_RED_NODES_DIRS: path.resolve(__dirname, 'nodes') },
    });
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /stage "consumer": the flow does not load: node type "no-such-node" not installed/);
  });

  it('runs an external-program stage with spawn\'s environment and writes the hostfile', function () {
    const flowFile = path.join(dir, 'flows.json');
    const out = path.join(dir, 'env.txt');
    const flow = [
      ...pipelineFlow(5555),
      { id: 'tabX', type: 'tab', label: 'Python consumer' },
      { id: 'stX', type: 'spawn-stage', z: 'tabX', stageId: 'pyconsumer', command: `env | grep -E '^(UPSTREAM_|STAGE_PEER|SPAWN_PEERS_FILE|MY_SETTING)' | sort > ${out}`, env: [{ name: 'MY_SETTING', value: 'on' }], inPattern: 'pull', inSources: 'producer', wires: [] },
    ];
    fs.writeFileSync(flowFile, JSON.stringify(flow));
    const all = { producer: [peer('producer', 0, 0, '127.0.0.2')], pyconsumer: [peer('pyconsumer', 1, 0, '127.0.0.5'), peer('pyconsumer', 1, 1, '127.0.0.6')] };
    const peers = writePeerFile(dir, all.pyconsumer[1], all, ['producer'], []);
    const hostfile = path.join(dir, 'hostfile');
    const r = spawnSync(process.execPath, [CLI, 'run', '--flow', flowFile, '--stage', 'pyconsumer', '--peers', peers, `--hostfile=${hostfile}`], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const env = fs.readFileSync(out, 'utf8').trim().split('\n');
    assert.deepEqual(env, [
      'MY_SETTING=on',
      `SPAWN_PEERS_FILE=${peers}`,
      'STAGE_PEERS=127.0.0.5,127.0.0.6',
      'STAGE_PEERS_DNS=pyconsumer-0.test.spore.host,pyconsumer-1.test.spore.host',
      'STAGE_PEER_COUNT=2',
      'UPSTREAM_PRODUCER=127.0.0.2',
      'UPSTREAM_PRODUCER_ALL=127.0.0.2',
      'UPSTREAM_PRODUCER_DNS=producer-0.test.spore.host',
      'UPSTREAM_PRODUCER_DNS_ALL=producer-0.test.spore.host',
    ]);
    assert.equal(fs.readFileSync(hostfile, 'utf8'), '127.0.0.5 slots=1\n127.0.0.6 slots=1\n');
  });
});

/** The peer count a node reports in an instance's stats file (SPAWN_STATS_FILE). */
function peersOf(statsFile: string, nodeId: string): number | undefined {
  try {
    return (JSON.parse(fs.readFileSync(statsFile, 'utf8')) as { nodes: Record<string, { peers: number }> }).nodes[nodeId]?.peers;
  } catch {
    return undefined;
  }
}

async function waitUntil(cond: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms: ${describe()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
