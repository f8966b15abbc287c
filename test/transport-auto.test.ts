import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { exportPipeline } from '../launcher/export';
import { streamPorts } from '../launcher/ec2/plan';
import { validateFlow } from '../launcher/validate';
import { edgeLine, pipelineGraph } from '../launcher/graph';
import { flowUsesQuic, issueInstanceCertificate, quicEnv } from '../launcher/local/quic-certs';
import { PeerFile, PeerInfo } from '../native/peers';
import { loadIdentity } from '../native/quic/pki';
import { regionOf, selectForStages, selectTransport } from '../native/transport-select';
import { autoSelections, transportOption } from '../nodes/common/transport';
import { load, node, startServer, stopServer, unload, waitForStatus } from './support/nr';
import { freeUdpPort } from './support/quic';

/** `auto` transport selection (the guide's table), its place in export and graph, and local launch certificates. */

const p = (stage: string, zone?: string, group?: string, efa?: boolean): PeerInfo => ({
  stage_id: stage,
  stage_index: 0,
  instance_id: `i-${stage}-${zone}`,
  private_ip: '127.0.0.1',
  dns_name: '',
  state: 'running',
  index: 0,
  ...(zone ? { availability_zone: zone } : {}),
  ...(group ? { placement_group: group } : {}),
  ...(efa !== undefined ? { efa_enabled: efa } : {}),
});

describe('transport auto: the selection table', function () {
  const cases: Array<[string, PeerInfo[], PeerInfo[], string]> = [
    ['both EFA in one placement group', [p('a', 'us-east-1a', 'pg1', true)], [p('b', 'us-east-1a', 'pg1', true)], 'rdma'],
    ['EFA on one side only, same zone', [p('a', 'us-east-1a', 'pg1', true)], [p('b', 'us-east-1a', 'pg1', false)], 'tcp'],
    ['EFA both sides, different placement groups, same zone', [p('a', 'us-east-1a', 'pg1', true)], [p('b', 'us-east-1a', 'pg2', true)], 'tcp'],
    ['same availability zone', [p('a', 'us-east-1a'), p('a', 'us-east-1a')], [p('b', 'us-east-1a')], 'tcp'],
    ['two zones of one region', [p('a', 'us-east-1a')], [p('b', 'us-east-1b')], 'quic'],
    ['one instance of a stage in another zone', [p('a', 'us-east-1a'), p('a', 'us-east-1b')], [p('b', 'us-east-1a')], 'quic'],
    ['two regions', [p('a', 'us-east-1a')], [p('b', 'eu-west-1a')], 'quic'],
    ['EFA both sides but placement group "auto" (unresolved), across zones', [p('a', 'us-east-1a', 'auto', true)], [p('b', 'us-east-1b', 'auto', true)], 'quic'],
    ['no zone in the peer file (older writer)', [p('a')], [p('b')], 'tcp'],
  ];
  for (const [what, a, b, want] of cases) {
    it(`${what} → ${want}`, function () {
      const sel = selectTransport(a, b);
      assert.equal(sel.transport, want, sel.why);
      assert.equal(selectTransport(b, a).transport, want, 'symmetric: both ends of an edge agree');
      assert.ok(sel.why.length > 0);
    });
  }

  it('names the zones or regions in its reason', function () {
    assert.match(selectTransport([p('a', 'us-east-1a')], [p('b', 'us-east-1c')]).why, /across availability zones \(us-east-1a, us-east-1c\)/);
    assert.match(selectTransport([p('a', 'us-east-1a')], [p('b', 'eu-west-1a')]).why, /across regions \(eu-west-1, us-east-1\)/);
    assert.equal(regionOf('ap-southeast-2b'), 'ap-southeast-2');
    assert.equal(regionOf('use1-az1'), 'use1-az1');
  });

  it('per node: an input follows its source stage, an output its downstream stages, no peer file means TCP', function () {
    const file = (self: string, all: Record<string, PeerInfo[]>, down: string[]): PeerFile => ({
      pipeline_id: 'x',
      stage_id: self,
      stage_index: 0,
      instance_index: 0,
      stage_peers: all[self],
      upstream_stages: {},
      downstream_stages: Object.fromEntries(down.map((d) => [d, all[d]])),
      all_stages: all,
    });
    const all = { src: [p('src', 'us-east-1a')], near: [p('near', 'us-east-1a')], far: [p('far', 'us-east-1b')] };
    assert.deepEqual(autoSelections(undefined, true, undefined).map((s) => s.transport), ['tcp']);
    assert.deepEqual(autoSelections(file('far', all, []), false, 'src').map((s) => s.transport), ['quic']);
    assert.deepEqual(autoSelections(file('near', all, []), false, 'src').map((s) => s.transport), ['tcp']);
    const out = autoSelections(file('src', all, ['near', 'far']), true, undefined);
    assert.deepEqual(out.map((s) => s.transport), ['tcp', 'quic'], 'an output feeding both binds both');
    assert.match(out[1].why, /^far: across availability zones/);
  });

  it('checks the option', function () {
    assert.equal(transportOption(undefined), 'tcp');
    assert.equal(transportOption(''), 'tcp');
    assert.equal(transportOption('auto'), 'auto');
    assert.throws(() => transportOption('udp'), /transport "udp" must be "tcp", "quic" or "auto"/);
  });
});

describe('transport in export and graph', function () {
  const flow = [
    { id: 'tabA', type: 'tab', label: 'Ingest' },
    { id: 'tabB', type: 'tab', label: 'Work' },
    { id: 'sa', type: 'spawn-stage', z: 'tabA', stageId: 'ingest', instanceCount: 1, region: 'us-east-1', wires: [] },
    { id: 'push', type: 'spawn-push', z: 'tabA', port: 6000, transport: 'auto', wires: [] },
    { id: 'sb', type: 'spawn-stage', z: 'tabB', stageId: 'work', instanceCount: 2, region: 'eu-west-1', wires: [] },
    { id: 'pull', type: 'spawn-pull', z: 'tabB', sourceStage: 'ingest', endpoints: '', transport: 'auto', wires: [] },
  ];

  it('export carries a non-default transport on data_input and data_output', function () {
    const { pipeline } = exportPipeline(flow);
    const [ingest, work] = pipeline.stages as unknown as Array<Record<string, Record<string, unknown>>>;
    assert.equal(ingest.data_output.transport, 'auto');
    assert.equal(work.data_input.transport, 'auto');
    const plain = exportPipeline(flow.map((n) => ({ ...n, transport: undefined }))).pipeline.stages as unknown as Array<Record<string, Record<string, unknown>>>;
    assert.equal(plain[0].data_output.transport, undefined, 'tcp (the default) adds nothing');
  });

  it('the EC2 security group opens UDP for quic, TCP and UDP for auto', function () {
    const ports = (t: string | undefined) => streamPorts(exportPipeline(flow.map((n) => (n.type === 'spawn-push' ? { ...n, transport: t } : n))).pipeline as never).map((x) => `${x.ipProtocol}/${x.port}`);
    assert.deepEqual(ports('auto'), ['tcp/6000', 'udp/6000']);
    assert.deepEqual(ports('quic'), ['udp/6000']);
    assert.deepEqual(ports(undefined), ['tcp/6000']);
  });

  it('graph shows the transport per edge, resolving auto where the stages tell', function () {
    const { pipeline } = exportPipeline(flow);
    assert.equal(edgeLine(pipelineGraph(pipeline).edges[0]), 'ingest ──zmq push→pull :6000 [auto→quic (across regions (us-east-1, eu-west-1))]──▶ work');
    const stages = (pipeline.stages as unknown as Array<Record<string, unknown>>).map((s) => ({ ...s, region: 'us-east-1', efa_enabled: true, placement_group: 'auto' }));
    assert.match(edgeLine(pipelineGraph({ ...pipeline, stages }).edges[0]), /\[auto→rdma \(both stages have EFA in the pipeline placement group\)\]/);
    const same = (pipeline.stages as unknown as Array<Record<string, unknown>>).map((s) => ({ ...s, region: 'us-east-1' }));
    assert.match(edgeLine(pipelineGraph({ ...pipeline, stages: same }).edges[0]), /\[auto→tcp or quic \(TCP within an availability zone, QUIC across zones/);
    assert.equal(selectForStages({ region: 'a' }, { region: 'b' }).transport, 'quic');
  });
});

describe('QUIC certificates for a local launch', function () {
  it('one CA per pipeline, a certificate per instance, private keys 0600 and never in the flow or export', function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-pki-'));
    try {
      assert.equal(flowUsesQuic([{ type: 'spawn-push', transport: 'tcp' }]), false);
      assert.equal(flowUsesQuic([{ type: 'spawn-pull', transport: 'auto' }]), true);
      const a = path.join(dir, 'a-0');
      const b = path.join(dir, 'b-0');
      issueInstanceCertificate(dir, 'p1', a, 'a-0.p1.spore.host');
      issueInstanceCertificate(dir, 'p1', b, 'b-0.p1.spore.host');
      const mode = (f: string) => fs.statSync(f).mode & 0o777;
      assert.equal(mode(path.join(dir, 'quic-ca', 'ca-key.pem')), 0o600);
      assert.equal(mode(path.join(dir, 'quic-ca')), 0o700);
      assert.equal(mode(path.join(a, 'quic', 'key.pem')), 0o600);
      assert.equal(fs.existsSync(path.join(a, 'quic', 'ca-key.pem')), false, 'instances get no CA key');
      assert.equal(fs.readFileSync(path.join(a, 'quic', 'ca.pem'), 'utf8'), fs.readFileSync(path.join(b, 'quic', 'ca.pem'), 'utf8'), 'one CA');
      assert.deepEqual(quicEnv(a), { SPAWN_QUIC_DIR: path.join(a, 'quic') });
      assert.deepEqual(quicEnv(path.join(dir, 'none')), {});
      const key = fs.readFileSync(path.join(a, 'quic', 'key.pem'), 'utf8');
      assert.match(key, /BEGIN PRIVATE KEY/);
      const flow = [{ id: 't', type: 'tab', label: 'A' }, { id: 'n', type: 'spawn-push', z: 't', transport: 'quic', port: 7000, wires: [] }];
      const exported = JSON.stringify(exportPipeline(flow).pipeline);
      assert.ok(!/PRIVATE KEY/.test(exported) && !/PRIVATE KEY/.test(JSON.stringify(flow)));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('spawn-red certs', function () {
  it('makes a CA and a runtime directory per name that QUIC accepts', async function () {
    const { spawnSync } = await import('child_process');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-certs-'));
    try {
      const cli = path.resolve(__dirname, '..', '..', 'bin', 'spawn-red.js');
      const r = spawnSync(process.execPath, [cli, 'certs', dir, '--names', 'a-0,b-0'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /a-0: .* SPAWN_QUIC_DIR=/);
      assert.equal(fs.statSync(path.join(dir, 'ca', 'ca-key.pem')).mode & 0o777, 0o600);
      assert.equal(fs.statSync(path.join(dir, 'b-0', 'key.pem')).mode & 0o777, 0o600);
      const id = loadIdentity(path.join(dir, 'a-0'));
      assert.equal(id.caPem, fs.readFileSync(path.join(dir, 'b-0', 'ca.pem'), 'utf8'));
      const bad = spawnSync(process.execPath, [cli, 'certs', dir, '--names', '../x'], { encoding: 'utf8' });
      assert.equal(bad.status, 1);
      assert.match(bad.stderr, /--names: "..\/x" cannot be a directory name/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('transport auto in a Node-RED runtime', function () {
  before(startServer);
  after(stopServer);
  afterEach(unload);

  it('shows the choice in the node status', async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-auto-status-'));
    const all = { src: [p('src', 'us-east-1a')], me: [p('me', 'eu-west-1b')] };
    const file: PeerFile = { pipeline_id: 'x', stage_id: 'me', stage_index: 1, instance_index: 0, stage_peers: all.me, upstream_stages: { src: all.src }, downstream_stages: {}, all_stages: all };
    fs.writeFileSync(path.join(dir, 'peers.json'), JSON.stringify(file));
    const saved = { peers: process.env.SPAWN_PEERS_FILE, quic: process.env.SPAWN_QUIC_DIR };
    process.env.SPAWN_PEERS_FILE = path.join(dir, 'peers.json');
    process.env.SPAWN_QUIC_DIR = path.join(dir, 'quic');
    try {
      const port = await freeUdpPort();
      // No source stage in this one-tab flow: the node names its endpoint, auto still picks by the file (none named: TCP).
      await load([
        { id: 'tab1', type: 'tab', label: 'me' },
        { id: 'pull', type: 'spawn-pull', z: 'tab1', transport: 'auto', endpoints: `tcp://127.0.0.1:${port}`, wires: [] },
        { id: 'push', type: 'spawn-push', z: 'tab1', transport: 'quic', addr: '127.0.0.1', port, wires: [] },
      ]);
      await waitForStatus('pull', (s) => /^auto→tcp: /.test(s.text ?? ''));
      await waitForStatus('push', (s) => /quic:\/\/127\.0\.0\.1/.test(s.text ?? ''));
      void node;
    } finally {
      if (saved.peers === undefined) delete process.env.SPAWN_PEERS_FILE;
      else process.env.SPAWN_PEERS_FILE = saved.peers;
      if (saved.quic === undefined) delete process.env.SPAWN_QUIC_DIR;
      else process.env.SPAWN_QUIC_DIR = saved.quic;
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an output whose downstream stages choose differently binds TCP and QUIC, and serves both', async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-auto-dual-'));
    const all = { src: [p('src', 'us-east-1a')], near: [p('near', 'us-east-1a')], far: [p('far', 'us-east-1b')] };
    const file: PeerFile = { pipeline_id: 'x', stage_id: 'src', stage_index: 0, instance_index: 0, stage_peers: all.src, upstream_stages: {}, downstream_stages: { near: all.near, far: all.far }, all_stages: all };
    fs.writeFileSync(path.join(dir, 'peers.json'), JSON.stringify(file));
    const saved = { peers: process.env.SPAWN_PEERS_FILE, quic: process.env.SPAWN_QUIC_DIR };
    process.env.SPAWN_PEERS_FILE = path.join(dir, 'peers.json');
    process.env.SPAWN_QUIC_DIR = path.join(dir, 'quic');
    try {
      const port = await freeUdpPort();
      await load([
        { id: 'tab1', type: 'tab', label: 'src' },
        { id: 'push', type: 'spawn-push', z: 'tab1', transport: 'auto', addr: '127.0.0.1', port, batch: false, wires: [] },
        { id: 'viaTcp', type: 'spawn-pull', z: 'tab1', transport: 'tcp', endpoints: `tcp://127.0.0.1:${port}`, wires: [['a']] },
        { id: 'viaQuic', type: 'spawn-pull', z: 'tab1', transport: 'quic', endpoints: `quic://127.0.0.1:${port}`, wires: [['b']] },
        { id: 'a', type: 'helper', z: 'tab1' },
        { id: 'b', type: 'helper', z: 'tab1' },
      ]);
      await waitForStatus('push', (s) => /^auto→tcp\+quic: tcp 1 peer \| quic: 1 peer/.test(s.text ?? ''));
      const got: Record<string, number[]> = { a: [], b: [] };
      for (const id of ['a', 'b'] as const) node(id).on('input', (m) => got[id].push(m.payload as number));
      for (let i = 0; i < 200; i++) node('push').receive({ payload: i } as never);
      const end = Date.now() + 10_000;
      while (got.a.length + got.b.length < 200 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      assert.ok(got.a.length > 0 && got.b.length > 0, `both transports carried messages (tcp ${got.a.length}, quic ${got.b.length})`);
      assert.deepEqual([...got.a, ...got.b].sort((x, y) => x - y), Array.from({ length: 200 }, (_, i) => i));
    } finally {
      if (saved.peers === undefined) delete process.env.SPAWN_PEERS_FILE;
      else process.env.SPAWN_PEERS_FILE = saved.peers;
      if (saved.quic === undefined) delete process.env.SPAWN_QUIC_DIR;
      else process.env.SPAWN_QUIC_DIR = saved.quic;
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('validate: both ends of a stream use one transport', function () {
  const flow = (inT: string | undefined, outT: string | undefined) => [
    { id: 'tabA', type: 'tab', label: 'Ingest' },
    { id: 'tabB', type: 'tab', label: 'Work' },
    { id: 'sa', type: 'spawn-stage', z: 'tabA', stageId: 'ingest', instanceCount: 1, wires: [] },
    { id: 'push', type: 'spawn-push', z: 'tabA', port: 6000, transport: outT, wires: [] },
    { id: 'sb', type: 'spawn-stage', z: 'tabB', stageId: 'work', instanceCount: 1, wires: [] },
    { id: 'pull', type: 'spawn-pull', z: 'tabB', sourceStage: 'ingest', endpoints: '', transport: inT, wires: [] },
  ];
  it('accepts equal transports and refuses different ones, naming both', function () {
    assert.deepEqual(validateFlow(flow('quic', 'quic')), []);
    assert.deepEqual(validateFlow(flow(undefined, 'tcp')), [], 'absent is tcp');
    const problems = validateFlow(flow('quic', 'auto'));
    assert.equal(problems.length, 1);
    assert.equal(problems[0].field, 'transport');
    assert.match(problems[0].message, /uses transport quic but reads from stage "ingest" whose push .* uses auto/);
  });
});
