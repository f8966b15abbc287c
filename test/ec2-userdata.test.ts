import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import type { Instance } from '@aws-sdk/client-ec2';
import { exportPipeline, SpawnPipeline } from '../launcher/export';
import { Ec2PlanError } from '../launcher/ec2/errors';
import { buildPeerFile, envFileText, missingPeers, peersFromInstances, PipelineShape, writePeerFiles } from '../launcher/ec2/peer-writer';
import { stagePlans } from '../launcher/ec2/plan';
import { prepareLaunch } from '../launcher/ec2/provision';
import { renderUserData, serviceUnit, sizeProblem, stageScript, USER_DATA_LIMIT } from '../launcher/ec2/user-data';
import { loadPeerFile } from '../native/peers';
import { requireSystem } from './support/system';

/**
 * The user data the ec2 provider sends, rendered for every example: valid bash (bash -n), clean
 * under shellcheck, under EC2's 16 KiB, carrying the pipeline and flow intact and no credential;
 * and the peer writer it runs, on a recorded DescribeInstances response.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const EXAMPLES = path.join(ROOT, 'examples');
const PIPELINES = path.join(ROOT, 'pipelines');

function hasShellcheck(): boolean {
  return spawnSync('shellcheck', ['--version'], { stdio: 'ignore' }).status === 0;
}

interface Rendered {
  name: string;
  stage: string;
  script: string;
  pipeline: SpawnPipeline;
  flow?: unknown[];
}

/** Every example flow (exported on the fly) and the RDMA pipeline file, each stage's user data. */
function renderExamples(): Rendered[] {
  const out: Rendered[] = [];
  const flows = fs.readdirSync(EXAMPLES).filter((f) => f.endsWith('.json')).sort();
  assert.ok(flows.length >= 4, 'the examples are there');
  for (const f of flows) {
    const flow = JSON.parse(fs.readFileSync(path.join(EXAMPLES, f), 'utf8')) as unknown[];
    const { pipeline, problems } = exportPipeline(flow, { fileName: f });
    assert.deepEqual(problems, [], f);
    for (const p of stagePlans(pipeline)) {
      out.push({ name: f, stage: p.stage.stage_id, pipeline, flow, script: renderUserData({ pipeline, stage: p.stage, stageIndex: p.index, region: 'eu-west-1', launchToken: 'tok-1', packageSpec: '@spawn-red/node-red-spawn@0.1.0', flow, efa: p.efa }) });
    }
  }
  const hpc = JSON.parse(fs.readFileSync(path.join(PIPELINES, 'hpc-rdma.json'), 'utf8')) as SpawnPipeline;
  for (const p of stagePlans(hpc)) {
    out.push({ name: 'hpc-rdma.json', stage: p.stage.stage_id, pipeline: hpc, script: renderUserData({ pipeline: hpc, stage: p.stage, stageIndex: p.index, region: 'us-east-1', launchToken: 'tok-2', packageSpec: 'https://example.com/spawn-red-0.1.0.tgz', efa: p.efa }) });
  }
  return out;
}

/** The gzip+base64 blocks of a script, decoded, in order. */
function blobs(script: string): string[] {
  const re = /<<'SPAWN_RED_DATA'[^\n]*\n([A-Za-z0-9+/=\n]+?)\nSPAWN_RED_DATA\n/g;
  const found: string[] = [];
  for (let m = re.exec(script); m; m = re.exec(script)) found.push(zlib.gunzipSync(Buffer.from(m[1].replace(/\n/g, ''), 'base64')).toString('utf8'));
  return found;
}

function heredoc(script: string, delimiter: string): string {
  const m = new RegExp(`<<'${delimiter}'\\n([^]*?)\\n${delimiter}\\n`).exec(script);
  assert.ok(m, `no ${delimiter} block`);
  return `${m[1]}\n`;
}

describe('ec2 user data', function () {
  this.timeout(60_000);
  let tmp: string;
  let rendered: Rendered[];

  before(function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-ec2-ud-'));
    process.env.AWS_SECRET_ACCESS_KEY_FOR_TEST = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    rendered = renderExamples();
  });
  after(function () {
    delete process.env.AWS_SECRET_ACCESS_KEY_FOR_TEST;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('is a bash script under 16 KiB for every example, with the pipeline and flow intact and no credential', function () {
    for (const r of rendered) {
      const where = `${r.name} stage ${r.stage}`;
      assert.match(r.script, /^#!\/bin\/bash\n/, where);
      const size = Buffer.byteLength(r.script);
      assert.ok(size < USER_DATA_LIMIT, `${where}: ${size} bytes`);
      assert.equal(sizeProblem(r.stage, r.script, r.flow), undefined);
      const [pipelineText, flowText] = blobs(r.script);
      assert.deepEqual(JSON.parse(pipelineText), r.pipeline, where);
      if (r.flow) assert.deepEqual(JSON.parse(flowText), r.flow, where);
      else assert.equal(flowText, undefined);
      assert.ok(!r.script.includes('wJalrXUtnFEMI'), `${where}: no secret from the environment`);
      assert.match(r.script, new RegExp(`\\nSTAGE_ID=${r.stage}\\n`));
      assert.match(r.script, /\nsystemctl enable --now spawn-red\.service\n/);
      assert.equal(/efa_installer\.sh/.test(r.script), Boolean(r.pipeline.stages.find((s) => s.stage_id === r.stage)?.efa_enabled), `${where}: EFA software only on EFA stages`);
    }
  });

  it('passes bash -n', function () {
    for (const r of rendered) {
      const file = path.join(tmp, `${r.name}-${r.stage}.sh`);
      fs.writeFileSync(file, r.script);
      const res = spawnSync('bash', ['-n', file], { encoding: 'utf8' });
      assert.equal(res.status, 0, `${r.name} stage ${r.stage}: ${res.stderr}`);
    }
  });

  it('passes shellcheck, and so does the stage script it writes', function () {
    requireSystem(this, 'shellcheck', hasShellcheck(), 'apt-get install shellcheck');
    const files: string[] = [];
    for (const r of rendered) {
      const file = path.join(tmp, `${r.name}-${r.stage}.sh`);
      fs.writeFileSync(file, r.script);
      const stage = path.join(tmp, `${r.name}-${r.stage}.stage.sh`);
      fs.writeFileSync(stage, heredoc(r.script, 'SPAWN_RED_STAGE'));
      files.push(file, stage);
    }
    const res = spawnSync('shellcheck', ['--shell=bash', '--severity=style', ...files], { encoding: 'utf8' });
    assert.equal(res.status, 0, res.stdout + res.stderr);
  });

  it('starts the stage as a systemd service with logs in the journal, and the stage timeout as RuntimeMaxSec', function () {
    const r = rendered.find((x) => x.name === 'push-pull.json')!;
    const unit = heredoc(r.script, 'SPAWN_RED_UNIT');
    assert.match(unit, /^ExecStart=\/opt\/spawn-red\/stage\.sh$/m);
    assert.match(unit, /^StandardOutput=journal$/m);
    assert.match(unit, /^User=spawn-red$/m);
    assert.doesNotMatch(unit, /RuntimeMaxSec/);
    const stage = { ...r.pipeline.stages[0], timeout: '1h30m' };
    assert.match(serviceUnit('p', stage), /^RuntimeMaxSec=5400$/m);
    // A Node-RED stage runs `spawn-red run` for its tab (exec: systemd signals it directly); a compound command keeps its shell.
    assert.match(heredoc(r.script, 'SPAWN_RED_STAGE'), /\nexec spawn-red run --flow flows\.json --stage \S+\n$/);
    assert.match(stageScript('p', { ...stage, command: 'make run && ./analyze | tee out.log' }), /\nmake run && \.\/analyze \| tee out\.log\n$/);
  });

  it('refuses user data over 16 KiB, naming the sizes', function () {
    const flow = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'push-pull.json'), 'utf8')) as Array<Record<string, unknown>>;
    // Random text does not compress: a comment node carrying 24 KiB of it.
    const tab = flow.find((n) => n.type === 'tab')!;
    const big = [...flow, { id: 'big0000000000001', type: 'comment', z: tab.id, name: 'big', info: crypto.randomBytes(18 * 1024).toString('base64'), x: 100, y: 400, wires: [] }];
    const { pipeline, problems } = exportPipeline(big, { fileName: 'big.json' });
    assert.deepEqual(problems, []);
    assert.throws(
      () => prepareLaunch({ input: { pipeline, flow: big, source: 'big.json' }, options: { instanceProfile: 'p' }, region: 'us-east-1' }),
      (e: Error) => e instanceof Ec2PlanError && /^stage "producer": user data is \d+ bytes, over EC2's limit of 16384 bytes; the flow is \d+ bytes, \d+ compressed and base64-encoded: make the flow smaller/.test(e.problems[0]),
    );
  });

  it('refuses a stage command that would end its heredoc', function () {
    const hpc = JSON.parse(fs.readFileSync(path.join(PIPELINES, 'hpc-rdma.json'), 'utf8')) as SpawnPipeline;
    hpc.stages[1].command = './analyze <<EOF\nSPAWN_RED_STAGE\nEOF';
    assert.throws(() => prepareLaunch({ input: { pipeline: hpc, source: 'x' }, options: { instanceProfile: 'p' }, region: 'us-east-1' }), /contains a line "SPAWN_RED_STAGE"/);
  });
});

/**
 * A DescribeInstances response as the SDK returns it (EC2's shape, recorded without the state
 * filter): the pipeline "streaming-example" launched with a producer and two consumers (in one
 * reservation, listed out of index order), a pending and a terminated consumer from another launch
 * of the same pipeline id, and an instance of another pipeline.
 */
const RECORDED = path.join(ROOT, 'test', 'ec2-describe-instances.json');

describe('ec2 peer writer', function () {
  const pipeline: PipelineShape = JSON.parse(fs.readFileSync(path.join(PIPELINES, 'streaming-example.json'), 'utf8'));
  // The recorded launch ran two consumers.
  pipeline.stages.find((s) => s.stage_id === 'consumer')!.instance_count = 2;
  const recorded = JSON.parse(fs.readFileSync(RECORDED, 'utf8')) as { Reservations: Array<{ Instances: Instance[] }> };
  const instances = recorded.Reservations.flatMap((r) => r.Instances);
  let tmp: string;
  before(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-ec2-peers-'))));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('reads the peers from the recorded response: this launch only, pending and running, sorted by index', function () {
    const peers = peersFromInstances(instances, 'streaming-example', 'streaming-example-mx1-0a1b2c3d');
    assert.deepEqual(Object.keys(peers).sort(), ['consumer', 'producer']);
    assert.deepEqual(peers.producer, [
      {
        stage_id: 'producer',
        stage_index: 0,
        instance_id: 'i-0a1f3e5c7b9d2a4c6',
        private_ip: '172.31.20.11',
        public_ip: '54.172.19.40',
        dns_name: 'producer-0.streaming-example.spore.host',
        state: 'running',
        index: 0,
        availability_zone: 'us-east-1b',
      },
    ]);
    assert.deepEqual(peers.consumer.map((p) => [p.index, p.instance_id, p.state]), [
      [0, 'i-0b2e4d6f8a1c3e5b7', 'running'],
      [1, 'i-0c3f5a7b9d2e4f6a8', 'running'],
    ]);
    assert.deepEqual(missingPeers(pipeline, peers), []);
    // Without the launch filter, spawn's own rule (the pipeline tag, pending or running) also takes the other launch's pending instance.
    assert.equal(peersFromInstances(instances, 'streaming-example').consumer.length, 3);
  });

  it('writes spawn\'s peer file, hostfile and environment for one instance', async function () {
    const out = path.join(tmp, 'pipeline-peers.json');
    const file = await writePeerFiles(
      { pipeline, stageId: 'consumer', launchToken: 'streaming-example-mx1-0a1b2c3d', out, hostfile: path.join(tmp, 'hostfile'), envFile: path.join(tmp, 'pipeline.env'), timeoutMs: 1000, pollMs: 1 },
      { describe: async () => instances, instanceId: async () => 'i-0c3f5a7b9d2e4f6a8', sleep: async () => undefined, log: () => undefined, now: () => 0 },
    );
    const loaded = loadPeerFile(out);
    assert.deepEqual(loaded, file);
    assert.equal(loaded.pipeline_id, 'streaming-example');
    assert.equal(loaded.stage_id, 'consumer');
    assert.equal(loaded.stage_index, 1);
    assert.equal(loaded.instance_index, 1);
    assert.equal(loaded.stage_peers.length, 2);
    assert.deepEqual(Object.keys(loaded.upstream_stages), ['producer']);
    assert.deepEqual(loaded.downstream_stages, {});
    assert.deepEqual(Object.keys(loaded.all_stages), ['producer', 'consumer']);
    assert.equal(fs.readFileSync(path.join(tmp, 'hostfile'), 'utf8'), '172.31.20.12 slots=1\n172.31.20.13 slots=1\n');
    const env = fs.readFileSync(path.join(tmp, 'pipeline.env'), 'utf8');
    assert.match(env, /^UPSTREAM_PRODUCER=172\.31\.20\.11$/m);
    assert.match(env, /^UPSTREAM_PRODUCER_DNS=producer-0\.streaming-example\.spore\.host$/m);
    assert.match(env, /^STAGE_PEERS=172\.31\.20\.12,172\.31\.20\.13$/m);
    assert.match(env, /^SPAWN_PEERS_FILE=/m);
    // The environment file is bash: sourcing it gives the values back exactly.
    const tricky = envFileText(file, out, { GREETING: "it's a \"test\" $HOME `x`" });
    fs.writeFileSync(path.join(tmp, 'tricky.env'), tricky);
    const res = spawnSync('bash', ['-c', `set -a; . '${path.join(tmp, 'tricky.env')}'; set +a; printf %s "$GREETING"`], { encoding: 'utf8' });
    assert.equal(res.stdout, "it's a \"test\" $HOME `x`");
  });

  it('waits while an instance is pending or not indexed yet, then writes; gives up after its timeout naming what is missing', async function () {
    const polls = [
      instances.map((i) => (i.InstanceId === 'i-0c3f5a7b9d2e4f6a8' ? { ...i, State: { Name: 'pending' as const } } : i)),
      instances.map((i) => (i.InstanceId === 'i-0c3f5a7b9d2e4f6a8' ? { ...i, Tags: i.Tags!.filter((t) => t.Key !== 'spawn:instance-index') } : i)),
      instances,
    ];
    const logs: string[] = [];
    let n = 0;
    const file = await writePeerFiles(
      { pipeline, stageId: 'producer', launchToken: 'streaming-example-mx1-0a1b2c3d', out: path.join(tmp, 'p2.json'), timeoutMs: 1000, pollMs: 1 },
      { describe: async () => polls[Math.min(n++, 2)], instanceId: async () => 'i-0a1f3e5c7b9d2a4c6', sleep: async () => undefined, log: (l) => logs.push(l), now: () => 0 },
    );
    assert.equal(n, 3);
    assert.equal(file.instance_index, 0);
    assert.deepEqual(logs.slice(0, 1), ['waiting: stage consumer: 1 of 2 running']);

    let t = 0;
    await assert.rejects(
      writePeerFiles(
        { pipeline, stageId: 'producer', launchToken: 'streaming-example-mx1-0a1b2c3d', out: path.join(tmp, 'p3.json'), timeoutMs: 50_000, pollMs: 5000 },
        { describe: async () => polls[0], instanceId: async () => 'i-0a1f3e5c7b9d2a4c6', sleep: async (ms) => void (t += ms), log: () => undefined, now: () => t },
      ),
      /gave up waiting for the pipeline's instances after 50 s: stage consumer: 1 of 2 running/,
    );
    assert.ok(!fs.existsSync(path.join(tmp, 'p3.json')));
  });

  it('builds the same file for every stage shape: upstream and downstream', function () {
    const peers = peersFromInstances(instances, 'streaming-example', 'streaming-example-mx1-0a1b2c3d');
    const producer = buildPeerFile(pipeline, peers, { stageId: 'producer', index: 0 });
    assert.deepEqual(Object.keys(producer.downstream_stages), ['consumer']);
    assert.deepEqual(producer.upstream_stages, {});
  });
});
