import { strict as assert } from 'assert';
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EC2Client, RunInstancesCommand } from '@aws-sdk/client-ec2';
import { GetParametersByPathCommand, ListTagsForResourceCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import type { SpawnPipeline } from '../launcher/export';
import { Ec2Api, quietSdkNotice } from '../launcher/ec2/api';
import { LaunchFailed, provision, quietOutput, teardown } from '../launcher/ec2/provision';
import { SecretStore } from '../launcher/ec2/secrets';
import { readEc2State } from '../launcher/ec2/state';
import { ec2LaunchCommand } from '../launcher/ec2/verbs';
import { fetchInstanceSecrets, SecretsError } from '../launcher/instance-secrets';
import { loadIdentity } from '../native/quic/pki';
import { openQuicStream } from '../native/quic/stream';
import { freeUdpPort } from './support/quic';
import { hasMoto, Moto, MOTO_INSTALL, startMoto } from './support/moto';
import { requireSystem } from './support/system';
import { CREDS, motoClients, REGION, ssmParameters } from './support/aws';
import { until } from './support/until';

/**
 * The EC2 launcher ships each instance its QUIC certificate and key through SSM Parameter Store
 * (SecureString), never through user data, ec2.json or a log. EC2 and SSM are moto's emulators on
 * 127.0.0.1 (never AWS); access-denied answers come from aws-sdk-client-mock. The instance side
 * fetches the parameters into 0600 files, and two QUIC endpoints connect with them.
 */

const CLI = path.resolve(__dirname, '..', '..', 'bin', 'spawn-red.js');
const FAST = { retry: { attempts: 3, baseMs: 5, capMs: 20 }, wait: { minDelay: 0.05, maxDelay: 0.2, maxWaitTime: 20 } };

function pipeline(id: string): SpawnPipeline {
  return {
    pipeline_id: id,
    pipeline_name: id,
    s3_bucket: `spawn-red-${id}`,
    on_failure: 'stop',
    stages: [
      { stage_id: 'producer', instance_type: 'c5.xlarge', instance_count: 1, command: 'spawn-red run --flow flows.json --stage producer', data_output: { mode: 'stream', protocol: 'zmq', pattern: 'push', port: 5555 } },
      {
        stage_id: 'consumer',
        instance_type: 'c5.xlarge',
        instance_count: 2,
        command: 'spawn-red run --flow flows.json --stage consumer',
        depends_on: ['producer'],
        data_input: { mode: 'stream', source_stage: 'producer', protocol: 'zmq', pattern: 'pull' },
      },
    ],
  } as SpawnPipeline;
}

/** Every file under `dir`, recursively. */
function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

const mode = (f: string) => fs.statSync(f).mode & 0o777;


function awsError(code: string, message: string): Error {
  return Object.assign(new Error(message), { name: code, $fault: 'client', $metadata: { httpStatusCode: 400 } });
}

describe('EC2 instance secrets through SSM Parameter Store (moto on 127.0.0.1)', function () {
  this.timeout(60_000);
  let moto: Moto | undefined;
  let motoUrl = '';
  let home: string;
  let env: NodeJS.ProcessEnv;
  let ec2: EC2Client;
  let ssm: SSMClient;
  /** The launch of the first test, used by the ones after it. */
  let launched: { id: string; token: string; path: string; userData: Map<string, string> } | undefined;

  before(async function () {
    requireSystem(this, 'moto (its emulator moto_server)', hasMoto(), MOTO_INSTALL);
    moto = await startMoto();
    motoUrl = moto.url;
    quietSdkNotice();
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-ec2-secrets-'));
    env = { ...process.env, SPAWN_RED_HOME: home };
    ({ ec2, ssm } = motoClients(motoUrl));
    // moto checks that a launch's instance profile exists.
    await moto.createInstanceProfile('spawn-red-peers');
  });

  after(async function () {
    ec2?.destroy();
    ssm?.destroy();
    await moto?.stop();
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  const parameters = (prefix: string, decrypt = false) => ssmParameters(ssm, prefix, decrypt);

  async function launch(id: string, client: EC2Client = ec2) {
    const api = new Ec2Api({ client, pipelineId: id, ...FAST });
    const secrets = new SecretStore({ client: ssm, pipelineId: id });
    const userData = new Map<string, string>();
    const state = await provision({
      api,
      input: { pipeline: pipeline(id), source: `${id}.json` },
      options: { instanceProfile: 'spawn-red-peers' },
      region: REGION,
      out: quietOutput,
      env,
      secrets,
      onUserData: (stage, script) => userData.set(stage, script),
    });
    return { api, secrets, state, userData };
  }

  it('launch: a certificate per instance as SecureString parameters under the launch path; user data and local state carry the path only', async function () {
    const id = 'sec';
    const { api, state, userData } = await launch(id);
    const base = `/spawn-red/${id}/${state.launch_token}`;
    assert.equal(state.secrets_path, base);
    launched = { id, token: state.launch_token, path: base, userData };

    const params = await parameters(`/spawn-red/${id}`);
    const expected = ['consumer/0', 'consumer/1', 'producer/0'].flatMap((slot) => ['ca.pem', 'cert.pem', 'key.pem'].map((f) => `${base}/${slot}/quic/${f}`));
    assert.deepEqual(params.map((p) => p.Name), expected);
    assert.ok(params.every((p) => p.Type === 'SecureString'), params.map((p) => `${p.Name} ${p.Type}`).join('\n'));
    const tags = await ssm.send(new ListTagsForResourceCommand({ ResourceType: 'Parameter', ResourceId: `${base}/producer/0/quic/key.pem` }));
    assert.deepEqual(Object.fromEntries((tags.TagList ?? []).map((t) => [t.Key, t.Value])), { 'spawn:pipeline-id': id, 'spawn-red:launch': state.launch_token });

    // The user data as RunInstances got it: the stage's parameter path, and no PEM at all.
    const runs = api.log.filter((c) => c.op === 'RunInstances').map((c) => Buffer.from((c.input as { UserData: string }).UserData, 'base64').toString('utf8'));
    assert.equal(runs.length, 2);
    for (const [stage, script] of userData) {
      assert.ok(runs.includes(script));
      assert.ok(script.includes(`--secrets 'ssm:${base}/${stage}'`) || script.includes(`--secrets ssm:${base}/${stage}`), script);
      assert.match(script, /^RuntimeDirectory=spawn-red$/m);
      assert.doesNotMatch(script, /-----BEGIN/);
    }

    // Decrypted: each instance has its own key; the CA's key is nowhere in SSM.
    const values = await parameters(`/spawn-red/${id}`, true);
    const keys = values.filter((p) => p.Name!.endsWith('/key.pem')).map((p) => p.Value!);
    assert.equal(new Set(keys).size, 3);
    assert.ok(keys.every((k) => k.includes('-----BEGIN PRIVATE KEY-----')));
    const pipelineDir = path.join(home, 'pipelines', id);
    const caKey = fs.readFileSync(path.join(pipelineDir, 'quic-ca', 'ca-key.pem'), 'utf8');
    assert.ok(!values.some((p) => p.Value === caKey), 'the CA key stays on the launching machine');
    assert.equal(mode(path.join(pipelineDir, 'quic-ca')), 0o700);
    assert.equal(mode(path.join(pipelineDir, 'quic-ca', 'ca-key.pem')), 0o600);
    // The launcher's local files: only the CA key holds a private key; ec2.json names parameters, never values.
    const withKeys = walk(home).filter((f) => /PRIVATE KEY/.test(fs.readFileSync(f, 'utf8')));
    assert.deepEqual(withKeys, [path.join(pipelineDir, 'quic-ca', 'ca-key.pem')]);
    const saved = readEc2State(id, env)!;
    assert.deepEqual([...saved.secret_parameters!].sort(), expected);
  });

  it('the instance side fetches its parameters into 0600 files in a 0700 folder, and two instances connect over QUIC with them', async function () {
    assert.ok(launched, 'needs the launch of the test before');
    const root = fs.mkdtempSync(path.join(home, 'instances-'));
    const fetched = await Promise.all(
      ['producer/0', 'consumer/1'].map((slot) => fetchInstanceSecrets(`ssm:${launched!.path}/${slot}`, path.join(root, slot.replace('/', '-'), 'secrets'), ssm)),
    );
    for (const f of fetched) {
      assert.deepEqual(f.files, ['quic/ca.pem', 'quic/cert.pem', 'quic/key.pem']);
      assert.equal(f.env.SPAWN_QUIC_DIR, path.join(f.dir, 'quic'));
      assert.equal(mode(f.dir), 0o700);
      assert.equal(mode(path.join(f.dir, 'quic')), 0o700);
      for (const file of f.files) assert.equal(mode(path.join(f.dir, file)), 0o600, file);
      assert.ok(!fs.existsSync(path.join(f.dir, 'quic', 'ca-key.pem')));
    }
    // The transport loads them as they are (no CA key: nothing is issued locally).
    const ids = fetched.map((f) => loadIdentity(f.env.SPAWN_QUIC_DIR));
    assert.equal(ids[0].caPem, ids[1].caPem);

    const port = await freeUdpPort();
    const got: unknown[] = [];
    const cfg = { format: 'spawn' as const, highWater: 1000, queueLimit: 10_000, maxMessageSize: 0, reconnectMs: 50, batch: true, noPeerMs: 60_000 };
    const handlers = (sink?: unknown[]) => ({ message: (m: { payload: unknown }) => sink?.push(m.payload), status: () => undefined, problem: () => undefined });
    const push = openQuicStream({ ...cfg, pattern: 'push', bind: [`quic://127.0.0.1:${port}`], connect: [], tlsDir: fetched[0].env.SPAWN_QUIC_DIR }, handlers());
    const pull = openQuicStream({ ...cfg, pattern: 'pull', bind: [], connect: [`quic://127.0.0.1:${port}`], tlsDir: fetched[1].env.SPAWN_QUIC_DIR }, handlers(got));
    try {
      await until('the TLS handshake (both certificates verified against the pipeline CA)', () => push.peers === 1 && pull.peers === 1);
      for (let i = 0; i < 100; i++) push.send(i, undefined, undefined, () => undefined);
      await until('100 messages', () => got.length === 100);
      assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => i));
    } finally {
      await Promise.all([push.close(0), pull.close(0)]);
    }
  });

  it('the peer writer (as the user data runs it, against moto) gives the stage SPAWN_SECRETS with its own index, and AWS_REGION', async function () {
    assert.ok(launched, 'needs the launch of the test before');
    const dir = fs.mkdtempSync(path.join(home, 'peers-'));
    const state = readEc2State(launched.id, env)!;
    const consumer1 = state.instances.find((i) => i.stage_id === 'consumer' && i.index === 1)!;
    fs.writeFileSync(path.join(dir, 'pipeline.json'), JSON.stringify(pipeline(launched.id)));
    // The peer writer's arguments exactly as the consumer's user data has them.
    const line = /--secrets ('?)(ssm:[^' ]+)\1 \\$/m.exec(launched.userData.get('consumer')!);
    assert.ok(line, 'the user data passes --secrets to the peer writer');
    const writer = path.resolve(__dirname, '..', 'launcher', 'ec2', 'peer-writer.js');
    const r = await new Promise<{ status: number | null; out: string }>((resolve) => {
      const child = spawn(
        process.execPath,
        [writer, '--pipeline', path.join(dir, 'pipeline.json'), '--stage', 'consumer', '--launch', launched!.token, '--region', REGION, '--instance-id', consumer1.instance_id,
          '--timeout', '20', '--poll', '0.1', '--out', path.join(dir, 'peers.json'), '--env-out', path.join(dir, 'pipeline.env'), '--secrets', line![2]],
        { env: { ...process.env, AWS_ENDPOINT_URL_EC2: motoUrl, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_EC2_METADATA_DISABLED: 'true' } },
      );
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      child.on('exit', (status) => resolve({ status, out }));
    });
    assert.equal(r.status, 0, r.out);
    const text = fs.readFileSync(path.join(dir, 'pipeline.env'), 'utf8');
    assert.match(text, new RegExp(`^SPAWN_SECRETS=ssm:${launched.path}/consumer/1$`, 'm'));
    assert.match(text, /^AWS_REGION=us-east-1$/m);
  });

  it('spawn-red run --secrets fetches before the stage starts and hands it SPAWN_QUIC_DIR; a missing path is one clear line', async function () {
    assert.ok(launched, 'needs the launch of the test before');
    const dir = fs.mkdtempSync(path.join(home, 'run-'));
    const flowFile = path.join(dir, 'flows.json');
    // An external-program stage: its command sees the environment `run` prepares.
    fs.writeFileSync(
      flowFile,
      JSON.stringify([
        { id: 't', type: 'tab', label: 'consumer' },
        { id: 's', type: 'spawn-stage', z: 't', stageId: 'consumer', instanceType: 'c5.xlarge', instanceCount: 2, command: 'ls "$SPAWN_QUIC_DIR" > "$OUT"', wires: [] },
      ]),
    );
    const runEnv: NodeJS.ProcessEnv = { ...process.env, SPAWN_RED_HOME: home, AWS_ENDPOINT_URL_SSM: motoUrl, AWS_REGION: REGION, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_EC2_METADATA_DISABLED: 'true', OUT: path.join(dir, 'out') };
    delete runEnv.SPAWN_PEERS_FILE;
    delete runEnv.AWS_PROFILE;
    // No --secrets-dir and no systemd RUNTIME_DIRECTORY: a temporary folder, removed when run exits.
    delete runEnv.RUNTIME_DIRECTORY;
    const ok = spawnSync(process.execPath, [CLI, 'run', '--flow', flowFile, '--stage', 'consumer'], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...runEnv, SPAWN_SECRETS: `ssm:${launched!.path}/consumer/0` },
    });
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.equal(fs.readFileSync(path.join(dir, 'out'), 'utf8'), 'ca.pem\ncert.pem\nkey.pem\n');
    const used = /secrets from ssm:\/spawn-red\/sec\/.*\/consumer\/0: quic\/ca\.pem, quic\/cert\.pem, quic\/key\.pem in (\S+)\n/.exec(ok.stdout);
    assert.ok(used, ok.stdout);
    assert.ok(!fs.existsSync(used[1]), `${used[1]} is left after run exited`);
    assert.doesNotMatch(ok.stdout + ok.stderr, /PRIVATE KEY/);

    const missing = spawnSync(process.execPath, [CLI, 'run', '--flow', flowFile, '--stage', 'consumer', '--secrets', 'ssm:/spawn-red/gone/x/consumer/0', '--secrets-dir', path.join(dir, 's2')], {
      encoding: 'utf8',
      timeout: 30_000,
      env: runEnv,
    });
    assert.equal(missing.status, 1, missing.stdout + missing.stderr);
    assert.equal(
      missing.stderr.trim(),
      'spawn-red run: no parameters under /spawn-red/gone/x/consumer/0 in SSM Parameter Store (us-east-1): the pipeline was taken down (spawn-red down deletes them) or the launch was rolled back, or the path is wrong (launch again with spawn-red launch)',
    );
    assert.ok(!fs.existsSync(path.join(dir, 's2')), 'nothing written');
  });

  it('down deletes every parameter of the pipeline', async function () {
    assert.ok(launched, 'needs the launch of the test before');
    const api = new Ec2Api({ client: ec2, pipelineId: launched.id, ...FAST });
    const secrets = new SecretStore({ client: ssm, pipelineId: launched.id });
    const r = await teardown(api, launched.id, readEc2State(launched.id, env), quietOutput, env, undefined, secrets);
    assert.equal(r.parameters?.length, 9);
    assert.deepEqual(await parameters(`/spawn-red/${launched.id}`), []);
    assert.equal(readEc2State(launched.id, env)!.secret_parameters, undefined);
  });

  it('a launch that fails after writing the parameters deletes them in its rollback', async function () {
    // moto's EC2, but RunInstances fails (after the secrets are written).
    const failing = Object.create(ec2) as EC2Client;
    failing.send = ((command: unknown) =>
      command instanceof RunInstancesCommand ? Promise.reject(awsError('InsufficientInstanceCapacity', 'We currently do not have sufficient c5.xlarge capacity.')) : ec2.send(command as never)) as EC2Client['send'];
    let failed: unknown;
    try {
      await launch('sec-fail', failing);
    } catch (e) {
      failed = e;
    }
    assert.ok(failed instanceof LaunchFailed, String(failed));
    assert.match(failed.cause.api, /RunInstances/);
    assert.ok(failed.rollback?.parameters?.length === 9, JSON.stringify(failed.rollback));
    assert.deepEqual(await parameters('/spawn-red/sec-fail'), []);
  });

  it('access denied: the launch says which permissions it needs and leaves nothing; the instance names the instance profile\'s', async function () {
    const denied = new SSMClient({ region: REGION, credentials: CREDS });
    const mock = mockClient(denied);
    try {
      mock.on(PutParameterCommand).rejects(awsError('AccessDeniedException', 'User: arn:aws:iam::123456789012:user/dev is not authorized to perform: ssm:PutParameter'));
      mock.on(GetParametersByPathCommand).rejects(awsError('AccessDeniedException', 'User: arn:aws:sts::123456789012:assumed-role/peers/i-1 is not authorized to perform: ssm:GetParametersByPath'));
      const id = 'sec-denied';
      let failed: unknown;
      try {
        await provision({
          api: new Ec2Api({ client: ec2, pipelineId: id, ...FAST }),
          input: { pipeline: pipeline(id), source: 'x' },
          options: { instanceProfile: 'spawn-red-peers' },
          region: REGION,
          out: quietOutput,
          env,
          secrets: new SecretStore({ client: denied, pipelineId: id }),
        });
      } catch (e) {
        failed = e;
      }
      assert.ok(failed instanceof LaunchFailed, String(failed));
      assert.match(failed.message, /^PutParameter \/spawn-red\/sec-denied\/\S+\/producer\/0\/quic\/ca\.pem failed: AccessDeniedException: .* — the launching credentials need ssm:PutParameter, ssm:AddTagsToResource, ssm:GetParametersByPath and ssm:DeleteParameters on arn:aws:ssm:\*:\*:parameter\/spawn-red\/\*/);
      // Nothing in EC2 was created before the secrets: the rollback had no instance or group to remove.
      assert.deepEqual([failed.rollback?.terminated, failed.rollback?.securityGroups], [[], []]);

      let err: unknown;
      try {
        await fetchInstanceSecrets('ssm:/spawn-red/p/tok/consumer/0', path.join(home, 'denied'), denied);
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof SecretsError, String(err));
      assert.match(err.message, /was denied: AccessDeniedException: .*ssm:GetParametersByPath — the instance profile's role needs ssm:GetParametersByPath on arn:aws:ssm:us-east-1:<account>:parameter\/spawn-red\/p\/\* and kms:Decrypt on the KMS key/);
      assert.ok(!fs.existsSync(path.join(home, 'denied')));
    } finally {
      mock.restore();
      denied.destroy();
    }
  });

  it('--dry-run lists the PutParameter calls with the values left out, and makes no key', async function () {
    const dir = fs.mkdtempSync(path.join(home, 'dry-'));
    const flowFile = path.join(dir, 'dry.json');
    fs.writeFileSync(
      flowFile,
      JSON.stringify([
        { id: 'tP', type: 'tab', label: 'producer' },
        { id: 'stP', type: 'spawn-stage', z: 'tP', stageId: 'producer', instanceType: 'c5.xlarge', instanceCount: 1, wires: [] },
        { id: 'push', type: 'spawn-push', z: 'tP', port: 7000, transport: 'quic', wires: [] },
        { id: 'tC', type: 'tab', label: 'consumer' },
        { id: 'stC', type: 'spawn-stage', z: 'tC', stageId: 'consumer', instanceType: 'c5.xlarge', instanceCount: 1, wires: [] },
        { id: 'pull', type: 'spawn-pull', z: 'tC', sourceStage: 'producer', transport: 'quic', wires: [] },
      ]),
    );
    const printed: string[] = [];
    const savedHome = process.env.SPAWN_RED_HOME;
    process.env.SPAWN_RED_HOME = dir;
    try {
      const code = await ec2LaunchCommand(
        { positional: [flowFile], flags: { provider: 'ec2', region: REGION, 'instance-profile': 'spawn-red-peers', 'dry-run': true, 'show-user-data': true } },
        { print: (t) => printed.push(t), err: (l) => printed.push(`ERR ${l}`) },
      );
      assert.equal(code, 0, printed.join('\n'));
    } finally {
      if (savedHome === undefined) delete process.env.SPAWN_RED_HOME;
      else process.env.SPAWN_RED_HOME = savedHome;
    }
    const text = printed.join('\n');
    // Without an instance profile the instances could not read their certificates: refused before any call.
    const refused: string[] = [];
    const code = await ec2LaunchCommand({ positional: [flowFile], flags: { provider: 'ec2', region: REGION, 'dry-run': true } }, { print: (t) => refused.push(t), err: (l) => refused.push(`ERR ${l}`) });
    assert.equal(code, 1);
    assert.deepEqual(refused, [
      'ERR spawn-red launch: the instances find each other with ec2:DescribeInstances and need an instance profile that allows it: pass --instance-profile NAME (README, "Launch on EC2", shows the policy)',
      'ERR spawn-red launch: the flow uses QUIC: each instance reads its certificate from SSM Parameter Store with its instance profile: pass --instance-profile NAME (README, "QUIC on EC2", shows the policy)',
    ]);
    assert.match(text, /PutParameter \(consumer instance 0\) \{[^}]*"Name": "\/spawn-red\/dry\/[^"]+\/consumer\/0\/quic\/key\.pem"[^}]*"Type": "SecureString"[^}]*"Value": "<quic\/key\.pem: made at launch, not shown>"/s);
    assert.match(text, /--secrets '?ssm:\/spawn-red\/dry\/dry-[a-z0-9-]+\/producer'? \\\n/);
    assert.doesNotMatch(text, /-----BEGIN/);
    assert.ok(!fs.existsSync(path.join(dir, 'pipelines')), 'a dry run keeps no state and makes no CA');
  });
});
