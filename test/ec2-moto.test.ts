import { strict as assert } from 'assert';
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { CreateKeyPairCommand, DescribeInstancesCommand, DescribeSecurityGroupsCommand, EC2Client, Instance } from '@aws-sdk/client-ec2';
import { quietSdkNotice } from '../launcher/ec2/api';
import { hasMoto, Moto, MOTO_INSTALL, startMoto } from './support/moto';
import { requireSystem } from './support/system';

/**
 * `spawn-red launch --provider ec2`, `status`, `list`, `down` as a user runs them (real CLI
 * processes), against moto's EC2 emulator on 127.0.0.1 (never a real AWS endpoint).
 *
 * moto 5.2 lacks placement groups (HTTP 500 on CreatePlacementGroup), and keeps no EFA interface
 * type. The harness adds what it lacks with a small proxy in front of moto, in this test only:
 * it answers CreatePlacementGroup / DescribePlacementGroups / DeletePlacementGroup itself (keeping
 * the groups in memory, with their tags), records every request (so the test sees the raw
 * RunInstances parameters, e.g. the efa interface type moto drops, and that a dry run makes no
 * request), can fail a chosen stage's RunInstances, and passes everything else to moto. The
 * launcher itself has no emulator switch: it only sees AWS_ENDPOINT_URL_EC2.
 */

const CLI = path.resolve(__dirname, '..', '..', 'bin', 'spawn-red.js');
const REGION = 'us-east-1';

interface PlacementGroup {
  name: string;
  strategy: string;
  id: string;
  tags: Record<string, string>;
}

const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const EC2_NS = 'http://ec2.amazonaws.com/doc/2016-11-15/';

function errorXml(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message></Error></Errors><RequestID>harness</RequestID></Response>`;
}

function groupXml(g: PlacementGroup): string {
  const tags = Object.entries(g.tags)
    .map(([k, v]) => `<item><key>${xmlEscape(k)}</key><value>${xmlEscape(v)}</value></item>`)
    .join('');
  return `<groupName>${xmlEscape(g.name)}</groupName><strategy>${g.strategy}</strategy><state>available</state><groupId>${g.id}</groupId><tagSet>${tags}</tagSet>`;
}

/** Indexed Query parameters (`Filter.1.Name`, `Filter.1.Value.1`, ...) back into lists. */
function indexed(params: URLSearchParams, prefix: string): Array<Record<string, string[]>> {
  const out: Array<Record<string, string[]>> = [];
  for (const [k, v] of params) {
    const m = new RegExp(`^${prefix.replace('.', '\\.')}\\.(\\d+)\\.([A-Za-z]+)(?:\\.(\\d+))?$`).exec(k);
    if (!m) continue;
    const i = Number(m[1]) - 1;
    (out[i] ??= {})[m[2]] = [...(out[i][m[2]] ?? []), v];
  }
  return out.filter(Boolean);
}

class Harness {
  moto?: Moto;
  server?: http.Server;
  motoUrl = '';
  url = '';
  requests: URLSearchParams[] = [];
  groups = new Map<string, PlacementGroup>();
  /** A stage whose RunInstances the proxy fails with InsufficientInstanceCapacity. */
  failStage?: string;

  async start(): Promise<void> {
    this.moto = await startMoto();
    this.motoUrl = this.moto.url;
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    await this.moto?.stop();
  }

  actions(): string[] {
    return this.requests.map((p) => p.get('Action') ?? '?');
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const params = new URLSearchParams(body.toString('utf8'));
      this.requests.push(params);
      const reply = (status: number, xml: string) => {
        res.writeHead(status, { 'content-type': 'text/xml' });
        res.end(xml);
      };
      const action = params.get('Action');
      if (action === 'CreatePlacementGroup') {
        const name = params.get('GroupName')!;
        if (this.groups.has(name)) return reply(400, errorXml('InvalidPlacementGroup.Duplicate', `The placement group '${name}' already exists.`));
        const tags: Record<string, string> = {};
        for (const t of indexed(params, 'TagSpecification.1.Tag')) tags[t.Key[0]] = t.Value[0];
        const g = { name, strategy: params.get('Strategy') ?? 'cluster', id: `pg-${this.groups.size + 1}0000000000000`, tags };
        this.groups.set(name, g);
        return reply(200, `<CreatePlacementGroupResponse xmlns="${EC2_NS}"><requestId>h</requestId><placementGroup>${groupXml(g)}</placementGroup></CreatePlacementGroupResponse>`);
      }
      if (action === 'DescribePlacementGroups') {
        const names = [...params].filter(([k]) => /^GroupName\.\d+$/.test(k)).map(([, v]) => v);
        const filters = indexed(params, 'Filter');
        const match = (g: PlacementGroup) =>
          (names.length === 0 || names.includes(g.name)) &&
          filters.every((f) => {
            const name = f.Name[0];
            if (name === 'tag-key') return f.Value.some((k) => k in g.tags);
            if (name.startsWith('tag:')) return f.Value.includes(g.tags[name.slice(4)]);
            if (name === 'group-name') return f.Value.includes(g.name);
            return true;
          });
        const found = [...this.groups.values()].filter(match);
        if (names.length && found.length === 0) return reply(400, errorXml('InvalidPlacementGroup.Unknown', `The placement group '${names[0]}' is unknown.`));
        return reply(200, `<DescribePlacementGroupsResponse xmlns="${EC2_NS}"><requestId>h</requestId><placementGroupSet>${found.map((g) => `<item>${groupXml(g)}</item>`).join('')}</placementGroupSet></DescribePlacementGroupsResponse>`);
      }
      if (action === 'DeletePlacementGroup') {
        const name = params.get('GroupName')!;
        if (!this.groups.delete(name)) return reply(400, errorXml('InvalidPlacementGroup.Unknown', `The placement group '${name}' is unknown.`));
        return reply(200, `<DeletePlacementGroupResponse xmlns="${EC2_NS}"><requestId>h</requestId><return>true</return></DeletePlacementGroupResponse>`);
      }
      if (action === 'RunInstances' && this.failStage) {
        const tags = indexed(params, 'TagSpecification.1.Tag');
        if (tags.some((t) => t.Key[0] === 'spawn:stage-id' && t.Value[0] === this.failStage)) {
          return reply(500, errorXml('InsufficientInstanceCapacity', `We currently do not have sufficient ${params.get('InstanceType')} capacity in the Availability Zone you requested.\nOur system will be working on provisioning additional capacity.`));
        }
      }
      const fwd = http.request(`${this.motoUrl}${req.url}`, { method: req.method, headers: { ...req.headers, 'content-length': String(body.length) } }, (up) => {
        res.writeHead(up.statusCode ?? 500, up.headers);
        up.pipe(res);
      });
      fwd.on('error', (e) => reply(502, errorXml('HarnessProxyError', e.message)));
      fwd.end(body);
    });
  }
}

const h = new Harness();
let home: string;
let env: NodeJS.ProcessEnv;
let ec2: EC2Client;

/** The CLI as a child process (asynchronously: the proxy runs in this process's event loop). */
function cli(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

async function instancesOf(pipelineId: string): Promise<Instance[]> {
  const out = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag:spawn:pipeline-id', Values: [pipelineId] }] }));
  return (out.Reservations ?? []).flatMap((r) => r.Instances ?? []);
}
const tagsOf = (i: Instance) => Object.fromEntries((i.Tags ?? []).map((t) => [t.Key, t.Value]));

function writePipeline(id: string): string {
  const file = path.join(home, `${id}.json`);
  fs.writeFileSync(
    file,
    JSON.stringify({
      pipeline_id: id,
      pipeline_name: id,
      s3_bucket: `spawn-red-${id}`,
      on_failure: 'stop',
      stages: [
        {
          stage_id: 'producer',
          instance_type: 'c5.xlarge',
          instance_count: 1,
          command: './produce',
          data_output: { mode: 'stream', protocol: 'zmq', pattern: 'push', port: 5555 },
        },
        {
          stage_id: 'consumer',
          instance_type: 'c5n.18xlarge',
          instance_count: 2,
          efa_enabled: true,
          placement_group: 'auto',
          spot: true,
          command: './consume --from "$UPSTREAM_PRODUCER"',
          depends_on: ['producer'],
          data_input: { mode: 'stream', source_stage: 'producer', protocol: 'zmq', pattern: 'pull' },
          env: { BATCH: '64' },
        },
      ],
    }),
  );
  return file;
}

/**
 * Run a user-data script as an instance would at first boot, in a sandbox: its absolute paths
 * moved under a folder, npm (installs this checkout), systemctl, useradd and chown stubbed (their
 * calls recorded), and a fake instance metadata service giving the instance id. Node.js is
 * installed here, so the script skips downloading it (curl is stubbed to fail if called).
 */
async function runUserData(script: string, instanceId: string): Promise<{ status: number | null; stdout: string; stderr: string; root: string; calls: string[] }> {
  const root = fs.mkdtempSync(path.join(home, 'instance-'));
  const bin = path.join(root, 'stub-bin');
  fs.mkdirSync(bin);
  const log = path.join(root, 'calls.log');
  const repo = path.resolve(__dirname, '..', '..');
  const stub = (name: string, body: string) => fs.writeFileSync(path.join(bin, name), `#!/bin/sh\necho "${name} $*" >> "$CALLS_LOG"\n${body}\n`, { mode: 0o755 });
  stub('npm', `prefix=""\nwhile [ $# -gt 0 ]; do if [ "$1" = --prefix ]; then prefix=$2; shift; fi; shift; done\nmkdir -p "$prefix/node_modules/.bin"\nln -sf '${repo}/bin/spawn-red.js' "$prefix/node_modules/.bin/spawn-red"`);
  stub('systemctl', 'exit 0');
  stub('useradd', 'exit 0');
  stub('chown', 'exit 0');
  stub('curl', 'echo "curl must not run: node is installed" >&2; exit 1');
  let moved = script;
  for (const dir of ['/etc/systemd/system', '/etc/spawn', '/opt/spawn-red', '/opt/amazon/efa', '/var/lib/spawn-red', '/usr/local']) moved = moved.split(dir).join(`${root}${dir}`);
  fs.mkdirSync(path.join(root, 'etc', 'systemd', 'system'), { recursive: true });
  // An AMI with the EFA software: the script skips its installer.
  fs.mkdirSync(path.join(root, 'opt', 'amazon', 'efa'), { recursive: true });
  const file = path.join(root, 'user-data.sh');
  fs.writeFileSync(file, moved, { mode: 0o755 });
  const imds = http.createServer((req, res) => {
    if (req.method === 'PUT' && req.url === '/latest/api/token') return res.end('token-1');
    if (req.headers['x-aws-ec2-metadata-token'] !== 'token-1') {
      res.statusCode = 401;
      return res.end();
    }
    if (req.url === '/latest/meta-data/instance-id') return res.end(instanceId);
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((r) => imds.listen(0, '127.0.0.1', r));
  try {
    const result = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn('bash', [file], {
        env: { ...env, PATH: `${bin}:${process.env.PATH}`, CALLS_LOG: log, AWS_EC2_METADATA_SERVICE_ENDPOINT: `http://127.0.0.1:${(imds.address() as net.AddressInfo).port}` },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.on('exit', (status) => {
        clearTimeout(timer);
        resolve({ status, stdout, stderr });
      });
    });
    const calls = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n') : [];
    return { ...result, root, calls };
  } finally {
    await new Promise<void>((r) => imds.close(() => r()));
  }
}

describe('ec2 provider against moto (EC2 emulator on 127.0.0.1)', function () {
  this.timeout(90_000);

  before(async function () {
    requireSystem(this, 'moto (its EC2 emulator moto_server)', hasMoto(), MOTO_INSTALL);
    await h.start();
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-ec2-moto-'));
    env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('AWS_')) delete env[k];
    Object.assign(env, {
      SPAWN_RED_HOME: home,
      AWS_ENDPOINT_URL_EC2: h.url,
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: 'testing',
      AWS_SECRET_ACCESS_KEY: 'testing',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_CONFIG_FILE: path.join(home, 'no-aws-config'),
      AWS_SHARED_CREDENTIALS_FILE: path.join(home, 'no-aws-credentials'),
      SPAWN_RED_EC2_WAIT: '0.1,0.3,30',
      SPAWN_RED_EC2_RETRY: '3,20,100',
    });
    quietSdkNotice();
    ec2 = new EC2Client({ region: REGION, endpoint: h.motoUrl, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });
    await ec2.send(new CreateKeyPairCommand({ KeyName: 'spawn-red-test' }));
    // moto checks that an instance profile exists: make one through its IAM Query API.
    const iam = await fetch(`${h.motoUrl}/`, {
      method: 'POST',
      body: new URLSearchParams({ Action: 'CreateInstanceProfile', InstanceProfileName: 'spawn-red-peers', Version: '2010-05-08' }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0' },
    });
    assert.equal(iam.status, 200, await iam.text());
  });

  after(async function () {
    await h.stop();
    ec2?.destroy();
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  const launchArgs = (file: string) => [
    'launch', file, '--provider', 'ec2', '--instance-profile', 'spawn-red-peers', '--key-name', 'spawn-red-test', '--ssh-cidr', '203.0.113.0/24',
  ];

  it('--dry-run prints every call and makes none', async function () {
    const file = writePipeline('dry');
    const before = h.requests.length;
    const r = await cli(...launchArgs(file), '--dry-run');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(h.requests.length, before, `requests reached the endpoint: ${h.actions().slice(before).join(', ')}`);
    for (const op of ['CreateSecurityGroup', 'AuthorizeSecurityGroupIngress', 'CreatePlacementGroup', 'RunInstances (stage "producer")', 'RunInstances (stage "consumer")', 'CreateTags', 'waitUntilInstanceRunning']) {
      assert.ok(r.stdout.includes(op), `dry run lacks ${op}`);
    }
    assert.match(r.stdout, /"InterfaceType": "efa"/);
    assert.ok(!fs.existsSync(path.join(home, 'pipelines', 'dry')), 'a dry run keeps no state');
  });

  it('launch → status → list → down: a two-stage pipeline with EFA on one stage, nothing left after', async function () {
    const id = 'two-stage';
    const file = writePipeline(id);
    const launch = await cli(...launchArgs(file));
    assert.equal(launch.status, 0, `${launch.stdout}\n${launch.stderr}`);
    assert.match(launch.stdout, /stage consumer: 2 × c5n\.18xlarge/);

    // Instances and tags.
    const instances = (await instancesOf(id)).filter((i) => i.State?.Name === 'running');
    assert.equal(instances.length, 3);
    const byStage = (s: string) => instances.filter((i) => tagsOf(i)['spawn:stage-id'] === s).sort((a, b) => Number(tagsOf(a)['spawn:instance-index']) - Number(tagsOf(b)['spawn:instance-index']));
    assert.equal(byStage('producer').length, 1);
    assert.equal(byStage('consumer').length, 2);
    byStage('consumer').forEach((inst, index) => {
      const t = tagsOf(inst);
      assert.equal(t['spawn:pipeline-id'], id);
      assert.equal(t['spawn:stage-index'], '1');
      assert.equal(t['spawn:instance-index'], String(index));
      assert.equal(t['spawn:dns-name'], `consumer-${index}.${id}.spore.host`);
      assert.equal(t.Name, `${id}-consumer-${index}`);
      assert.equal(inst.KeyName, 'spawn-red-test');
      assert.equal(inst.InstanceLifecycle, 'spot');
      assert.equal(inst.MetadataOptions?.HttpTokens, 'required');
    });
    assert.equal(tagsOf(byStage('producer')[0])['spawn:stage-index'], '0');

    // The raw requests: one RunInstances per stage, the EFA interface (which moto does not keep), the placement group.
    const runs = h.requests.filter((p) => p.get('Action') === 'RunInstances');
    const consumerRun = runs.find((p) => indexed(p, 'TagSpecification.1.Tag').some((t) => t.Value[0] === 'consumer'))!;
    assert.equal(consumerRun.get('MinCount'), '2');
    assert.equal(consumerRun.get('MaxCount'), '2');
    assert.equal(consumerRun.get('NetworkInterface.1.InterfaceType'), 'efa');
    assert.equal(consumerRun.get('Placement.GroupName'), `spawn-red-${id}`);
    assert.equal(consumerRun.get('InstanceMarketOptions.MarketType'), 'spot');
    // moto shows the instance profile on the first instance of a call only: check the request.
    for (const run of runs) assert.equal(run.get('IamInstanceProfile.Name'), 'spawn-red-peers');
    const userData = Buffer.from(consumerRun.get('UserData')!, 'base64').toString('utf8');
    assert.match(userData, /^#!\/bin\/bash\n/);
    assert.match(userData, /STAGE_ID=consumer\n/);
    assert.ok(!userData.includes('testing'), 'no credential in the user data');
    const producerRun = runs.find((p) => p !== consumerRun)!;
    assert.equal(producerRun.get('NetworkInterface.1.InterfaceType'), null);
    assert.equal(producerRun.get('Placement.GroupName'), null);
    assert.deepEqual([...h.groups.values()].map((g) => [g.name, g.strategy, g.tags['spawn:pipeline-id']]), [[`spawn-red-${id}`, 'cluster', id]]);

    // The security group: the stream port and everything (EFA) from itself only, SSH from the CIDR asked.
    const sgs = (await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'tag:spawn:pipeline-id', Values: [id] }] }))).SecurityGroups ?? [];
    assert.equal(sgs.length, 1);
    const sg = sgs[0];
    const rules = (sg.IpPermissions ?? []).map((p) => `${p.IpProtocol} ${p.FromPort ?? ''} ${(p.UserIdGroupPairs ?? []).map((g) => g.GroupId).join(',')}${(p.IpRanges ?? []).map((r) => r.CidrIp).join(',')}`).sort();
    assert.deepEqual(rules, [`-1  ${sg.GroupId}`, 'tcp 22 203.0.113.0/24', `tcp 5555 ${sg.GroupId}`].sort());
    for (const inst of instances) assert.ok(inst.NetworkInterfaces?.[0]?.Groups?.some((g) => g.GroupId === sg.GroupId));

    // status and list.
    const status = await cli('status', id, '--json');
    assert.equal(status.status, 0, status.stderr);
    const s = JSON.parse(status.stdout) as { provider: string; status: string; instances: Array<{ stage_id: string; state: string; private_ip: string }> };
    assert.equal(s.provider, 'ec2');
    assert.equal(s.status, 'running');
    assert.equal(s.instances.filter((i) => i.state === 'running' && i.private_ip).length, 3);
    const table = await cli('status', id);
    assert.match(table.stdout, /pipeline two-stage \(ec2, us-east-1\): running/);
    const list = await cli('list', '--json');
    assert.equal(list.status, 0, list.stderr);
    assert.ok((JSON.parse(list.stdout) as Array<{ pipeline_id: string; provider: string }>).some((p) => p.pipeline_id === id && p.provider === 'ec2'));

    // What consumer 1 runs at boot: its user data as sent, in a sandbox (paths moved under a folder,
    // npm/systemctl/useradd/chown stubbed, a fake instance metadata service), against the same EC2.
    const consumer1 = byStage('consumer')[1];
    const boot = await runUserData(userData, consumer1.InstanceId!);
    assert.equal(boot.status, 0, `${boot.stdout}\n${boot.stderr}`);
    const etc = path.join(boot.root, 'etc', 'spawn');
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(etc, 'pipeline.json'), 'utf8')), JSON.parse(fs.readFileSync(file, 'utf8')));
    const peers = JSON.parse(fs.readFileSync(path.join(etc, 'pipeline-peers.json'), 'utf8'));
    assert.equal(peers.pipeline_id, id);
    assert.equal(peers.stage_id, 'consumer');
    assert.equal(peers.stage_index, 1);
    assert.equal(peers.instance_index, 1);
    assert.deepEqual(peers.stage_peers.map((p: { instance_id: string; index: number }) => [p.instance_id, p.index]), byStage('consumer').map((i, k) => [i.InstanceId, k]));
    assert.equal(peers.stage_peers[1].dns_name, `consumer-1.${id}.spore.host`);
    assert.equal(peers.upstream_stages.producer[0].private_ip, byStage('producer')[0].PrivateIpAddress);
    assert.deepEqual(peers.downstream_stages, {});
    assert.deepEqual(Object.keys(peers.all_stages).sort(), ['consumer', 'producer']);
    assert.equal(fs.readFileSync(path.join(etc, 'hostfile'), 'utf8'), byStage('consumer').map((i) => `${i.PrivateIpAddress} slots=1\n`).join(''));
    const envText = fs.readFileSync(path.join(etc, 'pipeline.env'), 'utf8');
    assert.match(envText, new RegExp(`^UPSTREAM_PRODUCER=${byStage('producer')[0].PrivateIpAddress!.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(envText, /^STAGE_PEER_COUNT=2$/m);
    assert.match(envText, /^BATCH=64$/m);
    const stageSh = fs.readFileSync(path.join(boot.root, 'opt', 'spawn-red', 'stage.sh'), 'utf8');
    assert.match(stageSh, /\n\.\/consume --from "\$UPSTREAM_PRODUCER"\n$/);
    assert.match(fs.readFileSync(path.join(boot.root, 'etc', 'systemd', 'system', 'spawn-red.service'), 'utf8'), /^ExecStart=.*\/opt\/spawn-red\/stage\.sh$/m);
    assert.deepEqual(boot.calls.filter((c) => c.startsWith('systemctl')), ['systemctl daemon-reload', 'systemctl enable --now spawn-red.service']);
    assert.ok(boot.calls.some((c) => /^npm install --prefix \S+\/opt\/spawn-red .*@spawn-red\/node-red-spawn@\d+\.\d+\.\d+ node-red@/.test(c)), boot.calls.join('\n'));
    // The stage's own command, as the service would start it: it sees spawn's variables.
    const probe = stageSh.replace('./consume --from "$UPSTREAM_PRODUCER"', 'echo "$UPSTREAM_PRODUCER $STAGE_PEERS $SPAWN_INSTANCE_INDEX" > "$OUT"').replace(/\ncd [^\n]+\n/, '\n');
    const probeFile = path.join(boot.root, 'probe.sh');
    fs.writeFileSync(probeFile, probe);
    const probed = spawnSync('bash', [probeFile], { env: { ...env, OUT: path.join(boot.root, 'probe.out') }, encoding: 'utf8' });
    assert.equal(probed.status, 0, probed.stderr);
    assert.equal(fs.readFileSync(path.join(boot.root, 'probe.out'), 'utf8').trim(), `${byStage('producer')[0].PrivateIpAddress} ${byStage('consumer').map((i) => i.PrivateIpAddress).join(',')} 1`);

    // down: everything goes, and a second down finds nothing.
    const down = await cli('down', id);
    assert.equal(down.status, 0, `${down.stdout}\n${down.stderr}`);
    assert.match(down.stdout, /terminated 3 instances/);
    const after = await instancesOf(id);
    assert.ok(after.every((i) => i.State?.Name === 'terminated'), after.map((i) => i.State?.Name).join(','));
    assert.equal(((await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'tag:spawn:pipeline-id', Values: [id] }] }))).SecurityGroups ?? []).length, 0);
    assert.equal(h.groups.size, 0);
    const again = await cli('down', id);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /nothing of two-stage is left in EC2/);
    const listed = JSON.parse((await cli('list', '--json')).stdout) as Array<{ pipeline_id: string; status: string }>;
    assert.equal(listed.find((p) => p.pipeline_id === id)?.status, 'down');
  });

  it('a RunInstances failure on the second stage leaves nothing from the first (one error line, rollback)', async function () {
    const id = 'half-way';
    const file = writePipeline(id);
    h.failStage = 'consumer';
    let r;
    try {
      r = await cli(...launchArgs(file));
    } finally {
      h.failStage = undefined;
    }
    assert.equal(r.status, 1, r.stdout);
    const lines = r.stderr.trim().split('\n');
    assert.match(lines[0], /^spawn-red launch: RunInstances \(stage "consumer"\) failed: InsufficientInstanceCapacity: We currently do not have sufficient c5n\.18xlarge capacity .* — .*try another --subnet/);
    assert.match(lines[1], /rolled back: terminated 1 instance, deleted placement group spawn-red-half-way, deleted security group sg-.*; nothing this launch created is left/);
    assert.equal(lines.length, 2, r.stderr);
    assert.ok(!/\n\s+at /.test(r.stderr), 'no stack trace');
    const left = (await instancesOf(id)).filter((i) => i.State?.Name !== 'terminated');
    assert.deepEqual(left, []);
    assert.equal(((await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'tag:spawn:pipeline-id', Values: [id] }] }))).SecurityGroups ?? []).length, 0);
    assert.ok(!h.groups.has(`spawn-red-${id}`));
    const status = JSON.parse((await cli('status', id, '--json')).stdout) as { status: string; reason: string };
    assert.equal(status.status, 'failed');
    assert.match(status.reason, /InsufficientInstanceCapacity/);
    // down after a failed launch: idempotent, nothing to do.
    const down = await cli('down', id);
    assert.equal(down.status, 0, down.stderr);
  });

  it('an unreachable endpoint is one line naming it', async function () {
    const saved = env.AWS_ENDPOINT_URL_EC2;
    env.AWS_ENDPOINT_URL_EC2 = 'http://127.0.0.1:9';
    try {
      const r = await cli('down', 'nowhere', '--provider', 'ec2');
      assert.equal(r.status, 1);
      assert.match(r.stderr.trim(), /^spawn-red down: DescribeInstances failed: ECONNREFUSED: .* — cannot reach the EC2 endpoint http:\/\/127\.0\.0\.1:9/);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    } finally {
      env.AWS_ENDPOINT_URL_EC2 = saved;
    }
  });
});
