import { strict as assert } from 'assert';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DescribeInstanceAttributeCommand, EC2Client } from '@aws-sdk/client-ec2';
import { SSMClient } from '@aws-sdk/client-ssm';
import * as zmq from 'zeromq';
import { quietSdkNotice } from '../launcher/ec2/api';
import { Ec2State, readEc2State } from '../launcher/ec2/state';
import { ec2DownCommand, ec2LaunchCommand } from '../launcher/ec2/verbs';
import { fetchInstanceSecrets } from '../launcher/instance-secrets';
import { curveSocketOptions, makeKeys, pipelineKeys } from '../native/curve';
import { loadPeerFile } from '../native/peers';
import { hasMoto, Moto, MOTO_INSTALL, startMoto } from './support/moto';
import { freePort } from './support/ports';
import { requireSystem } from './support/system';
import { motoClients, REGION, ssmParameters } from './support/aws';

/**
 * CurveZMQ on EC2: `spawn-red launch --provider ec2` of a flow with encryption "curve" ships the
 * pipeline's key file to every instance as a SecureString parameter (never in user data, ec2.json
 * or output), the public key reaches the peer file through the user data, the instance side's fetch
 * gives SPAWN_CURVE_KEYS a file native/curve.ts accepts, and ZeroMQ sockets with it connect while
 * another key pair is refused. EC2 and SSM are moto's emulators on 127.0.0.1 (never AWS).
 */

const FAST = { retry: { attempts: 3, baseMs: 5, capMs: 20 }, wait: { minDelay: 0.05, maxDelay: 0.2, maxWaitTime: 20 } };
const ID = 'curve-ec2';

/** A two-stage flow whose push/pull pair is encrypted (TCP transport: no QUIC certificates). */
function curveFlow(): unknown[] {
  return [
    { id: 'tP', type: 'tab', label: 'producer' },
    { id: 'stP', type: 'spawn-stage', z: 'tP', stageId: 'producer', instanceType: 'c5.xlarge', instanceCount: 1, wires: [] },
    { id: 'push', type: 'spawn-push', z: 'tP', port: 7000, encryption: 'curve', wires: [] },
    { id: 'tC', type: 'tab', label: 'consumer' },
    { id: 'stC', type: 'spawn-stage', z: 'tC', stageId: 'consumer', instanceType: 'c5.xlarge', instanceCount: 2, wires: [] },
    { id: 'pull', type: 'spawn-pull', z: 'tC', sourceStage: 'producer', encryption: 'curve', wires: [] },
  ];
}

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

const mode = (f: string) => fs.statSync(f).mode & 0o777;

describe('CurveZMQ keys for EC2 instances through SSM Parameter Store (moto on 127.0.0.1)', function () {
  this.timeout(60_000);
  let moto: Moto | undefined;
  let motoUrl = '';
  let home: string;
  let ec2: EC2Client;
  let ssm: SSMClient;
  let savedHome: string | undefined;
  /** What the launch test made, for the tests after it. */
  let launched: { state: Ec2State; publicKey: string; secretKey: string; userData: Map<string, string> } | undefined;

  before(async function () {
    requireSystem(this, 'moto (its emulator moto_server)', hasMoto(), MOTO_INSTALL);
    moto = await startMoto();
    motoUrl = moto.url;
    quietSdkNotice();
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-ec2-curve-'));
    // The verbs keep their state under SPAWN_RED_HOME (process.env: they run in this process).
    savedHome = process.env.SPAWN_RED_HOME;
    process.env.SPAWN_RED_HOME = home;
    ({ ec2, ssm } = motoClients(motoUrl));
    // moto checks that a launch's instance profile exists.
    await moto.createInstanceProfile('spawn-red-peers');
  });

  after(async function () {
    if (savedHome === undefined) delete process.env.SPAWN_RED_HOME;
    else process.env.SPAWN_RED_HOME = savedHome;
    ec2?.destroy();
    ssm?.destroy();
    await moto?.stop();
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  const parameters = (prefix: string, decrypt = false) => ssmParameters(ssm, prefix, decrypt);

  it('launch --provider ec2 of a flow with encryption curve: one key file per instance as SecureString; user data, ec2.json, local files and output carry the public key only', async function () {
    const flowFile = path.join(home, 'curve-flow.json');
    fs.writeFileSync(flowFile, JSON.stringify(curveFlow()));
    const said: string[] = [];
    const code = await ec2LaunchCommand(
      { positional: [flowFile], flags: { provider: 'ec2', region: REGION, 'pipeline-id': ID, 'instance-profile': 'spawn-red-peers' } },
      { client: ec2, ssm, ...FAST, out: { info: (l) => said.push(l), progress: (l) => said.push(l) }, print: (t) => said.push(t), err: (l) => said.push(`ERR ${l}`) },
    );
    assert.equal(code, 0, said.join('\n'));
    const state = readEc2State(ID)!;
    const base = `/spawn-red/${ID}/${state.launch_token}`;
    assert.equal(state.secrets_path, base);

    // Only the Curve key file (the flow has no QUIC), one per instance slot, all SecureString.
    const expected = ['consumer/0', 'consumer/1', 'producer/0'].map((slot) => `${base}/${slot}/curve/curve-keys.json`);
    const params = await parameters(`/spawn-red/${ID}`);
    assert.deepEqual(params.map((p) => p.Name), expected);
    assert.ok(params.every((p) => p.Type === 'SecureString'), params.map((p) => `${p.Name} ${p.Type}`).join('\n'));
    const values = await parameters(`/spawn-red/${ID}`, true);
    assert.equal(new Set(values.map((v) => v.Value)).size, 1, 'one key pair for the whole pipeline');
    const { publicKey, secretKey } = JSON.parse(values[0].Value!) as { publicKey: string; secretKey: string };
    assert.equal(publicKey.length, 40);
    assert.equal(secretKey.length, 40);

    // The user data as EC2 keeps it: the secrets path and the public key, never the secret key.
    const userData = new Map<string, string>();
    for (const i of state.instances) {
      const attr = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: i.instance_id, Attribute: 'userData' }));
      const script = Buffer.from(attr.UserData!.Value!, 'base64').toString('utf8');
      userData.set(i.stage_id, script);
      assert.ok(script.includes(`--secrets 'ssm:${base}/${i.stage_id}'`) || script.includes(`--secrets ssm:${base}/${i.stage_id}`), script);
      assert.ok(script.includes(`--curve-public-key '${publicKey}'`) || script.includes(`--curve-public-key ${publicKey}`), script);
      assert.ok(!script.includes(secretKey), `user data of ${i.instance_id} holds the secret key`);
    }
    assert.equal(userData.size, 2);
    // Nothing on the launching machine holds the secret key (ec2.json, pipeline.json, anything), nor does the output.
    const files = walk(home);
    assert.ok(files.some((f) => f.endsWith('ec2.json')), files.join('\n'));
    assert.deepEqual(files.filter((f) => fs.readFileSync(f, 'utf8').includes(secretKey)), []);
    assert.ok(!said.join('\n').includes(secretKey), 'the output shows the secret key');
    assert.match(said.join('\n'), /CurveZMQ keys: 3 instances, SecureString parameters under/);
    launched = { state, publicKey, secretKey, userData };
  });

  it('the instance side: the fetch sets SPAWN_CURVE_KEYS to a 0600 file native/curve.ts accepts; ZeroMQ sockets with it connect, another key pair is refused', async function () {
    assert.ok(launched, 'needs the launch of the test before');
    const root = fs.mkdtempSync(path.join(home, 'instances-'));
    const fetched = await Promise.all(
      ['producer/0', 'consumer/1'].map((slot) => fetchInstanceSecrets(`ssm:${launched!.state.secrets_path}/${slot}`, path.join(root, slot.replace('/', '-')), ssm)),
    );
    for (const f of fetched) {
      assert.deepEqual(f.files, ['curve/curve-keys.json']);
      assert.equal(f.env.SPAWN_CURVE_KEYS, path.join(f.dir, 'curve', 'curve-keys.json'));
      assert.equal(f.env.SPAWN_QUIC_DIR, undefined);
      assert.equal(mode(f.dir), 0o700);
      assert.equal(mode(f.env.SPAWN_CURVE_KEYS), 0o600);
    }
    // What a pattern node does with encryption curve (nodes/common/config.ts): no fallback file, SPAWN_CURVE_KEYS only.
    const [bindKeys, connectKeys] = fetched.map((f) => pipelineKeys({ SPAWN_CURVE_KEYS: f.env.SPAWN_CURVE_KEYS }, undefined));
    assert.deepEqual(bindKeys, { publicKey: launched.publicKey, secretKey: launched.secretKey });
    assert.deepEqual(connectKeys, bindKeys);

    const port = await freePort();
    const push = new zmq.Push({ linger: 0, ...curveSocketOptions(bindKeys, true) });
    const good = new zmq.Pull({ linger: 0, ...curveSocketOptions(connectKeys, false) });
    // An intruder who knows the (public) server key but has its own key pair: the ZAP handler refuses it.
    const other = makeKeys();
    const intruder = new zmq.Pull({ linger: 0, curveServerKey: bindKeys.publicKey, curvePublicKey: other.publicKey, curveSecretKey: other.secretKey });
    try {
      // The server's verdict on each connecting peer, in order: refused (ZAP 400) or admitted (handshake done).
      const verdicts: string[] = [];
      let verdict: () => void = () => undefined;
      const next = () => new Promise<void>((resolve) => (verdict = resolve));
      push.events.on('handshake:error:auth', () => (verdicts.push('refused'), verdict()));
      push.events.on('handshake', () => (verdicts.push('admitted'), verdict()));
      await push.bind(`tcp://127.0.0.1:${port}`);
      let decided = next();
      intruder.connect(`tcp://127.0.0.1:${port}`);
      await decided;
      assert.deepEqual(verdicts, ['refused'], 'a key pair other than the pipeline\'s is refused');
      decided = next();
      good.connect(`tcp://127.0.0.1:${port}`);
      await decided;
      assert.deepEqual(verdicts, ['refused', 'admitted']);
      // PUSH deals only to admitted peers: every message reaches the pipeline's socket.
      for (let i = 0; i < 20; i++) await push.send(String(i));
      const got: string[] = [];
      for (let i = 0; i < 20; i++) got.push(String((await good.receive())[0]));
      assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => String(i)));
    } finally {
      for (const s of [push, good, intruder]) s.close();
    }
  });

  it('the peer writer (with the arguments of the user data) writes the public key into the peer file as curve_public_key', async function () {
    assert.ok(launched, 'needs the launch test');
    const dir = fs.mkdtempSync(path.join(home, 'peers-'));
    const consumer1 = launched.state.instances.find((i) => i.stage_id === 'consumer' && i.index === 1)!;
    fs.copyFileSync(path.join(home, 'pipelines', ID, 'pipeline.json'), path.join(dir, 'pipeline.json'));
    const script = launched.userData.get('consumer')!;
    const secrets = /--secrets ('?)(ssm:[^' ]+)\1 \\$/m.exec(script);
    const key = /--curve-public-key '([^']+)' \\$/m.exec(script);
    assert.ok(secrets && key, script);
    const writer = path.resolve(__dirname, '..', 'launcher', 'ec2', 'peer-writer.js');
    const r = await new Promise<{ status: number | null; out: string }>((resolve) => {
      const child = spawn(
        process.execPath,
        [writer, '--pipeline', path.join(dir, 'pipeline.json'), '--stage', 'consumer', '--launch', launched!.state.launch_token, '--region', REGION, '--instance-id', consumer1.instance_id,
          '--timeout', '20', '--poll', '0.1', '--out', path.join(dir, 'peers.json'), '--env-out', path.join(dir, 'pipeline.env'), '--secrets', secrets![2], '--curve-public-key', key![1]],
        { env: { ...process.env, AWS_ENDPOINT_URL_EC2: motoUrl, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_EC2_METADATA_DISABLED: 'true' } },
      );
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      child.on('exit', (status) => resolve({ status, out }));
    });
    assert.equal(r.status, 0, r.out);
    const peers = loadPeerFile(path.join(dir, 'peers.json'));
    assert.equal(peers.curve_public_key, launched.publicKey);
    assert.equal(peers.instance_index, 1);
    assert.ok(!walk(dir).some((f) => fs.readFileSync(f, 'utf8').includes(launched!.secretKey)));
  });

  it('down deletes the key parameters', async function () {
    assert.ok(launched, 'needs the launch test');
    const said: string[] = [];
    const code = await ec2DownCommand({ positional: [ID], flags: { provider: 'ec2' } }, { client: ec2, ssm, ...FAST, out: { info: (l) => said.push(l), progress: () => undefined }, err: (l) => said.push(`ERR ${l}`) });
    assert.equal(code, 0, said.join('\n'));
    assert.deepEqual(await parameters(`/spawn-red/${ID}`), []);
    assert.equal(readEc2State(ID)!.secret_parameters, undefined);
  });

  it('--dry-run shows the key parameters with the values left out and a placeholder for the public key; without an instance profile it is refused', async function () {
    const flowFile = path.join(home, 'curve-dry.json');
    fs.writeFileSync(flowFile, JSON.stringify(curveFlow()));
    const printed: string[] = [];
    const code = await ec2LaunchCommand(
      { positional: [flowFile], flags: { provider: 'ec2', region: REGION, 'pipeline-id': 'curve-dry', 'instance-profile': 'spawn-red-peers', 'dry-run': true, 'show-user-data': true } },
      { print: (t) => printed.push(t), err: (l) => printed.push(`ERR ${l}`) },
    );
    assert.equal(code, 0, printed.join('\n'));
    const text = printed.join('\n');
    assert.match(text, /PutParameter \(consumer instance 1\) \{[^}]*"Name": "\/spawn-red\/curve-dry\/[^"]+\/consumer\/1\/curve\/curve-keys\.json"[^}]*"Type": "SecureString"[^}]*"Value": "<curve\/curve-keys\.json: made at launch, not shown>"/s);
    assert.match(text, /--curve-public-key '<curve public key: made at launch>' \\\n/);
    assert.doesNotMatch(text, /quic\//);

    const refused: string[] = [];
    const no = await ec2LaunchCommand({ positional: [flowFile], flags: { provider: 'ec2', region: REGION, 'pipeline-id': 'curve-dry', 'dry-run': true } }, { print: (t) => refused.push(t), err: (l) => refused.push(`ERR ${l}`) });
    assert.equal(no, 1);
    assert.ok(
      refused.includes('ERR spawn-red launch: the flow uses CurveZMQ encryption: each instance reads the pipeline\'s CurveZMQ keys from SSM Parameter Store with its instance profile: pass --instance-profile NAME (README, "QUIC on EC2", shows the policy)'),
      refused.join('\n'),
    );
  });
});
