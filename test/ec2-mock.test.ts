import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  AuthorizeSecurityGroupIngressCommand,
  CreatePlacementGroupCommand,
  CreateSecurityGroupCommand,
  CreateTagsCommand,
  DeletePlacementGroupCommand,
  DeleteSecurityGroupCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeInstanceTypeOfferingsCommand,
  DescribeInstanceTypesCommand,
  DescribePlacementGroupsCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  EC2Client,
  Instance,
  RunInstancesCommand,
  RunInstancesCommandInput,
  Tag,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import type { SpawnPipeline } from '../launcher/export';
import { Ec2Api, quietSdkNotice } from '../launcher/ec2/api';
import { Ec2Error, oneLine, toEc2Error } from '../launcher/ec2/errors';
import { clientToken, Ec2Options } from '../launcher/ec2/plan';
import { LaunchFailed, provision, quietOutput, teardown } from '../launcher/ec2/provision';
import { readEc2State } from '../launcher/ec2/state';
import { ec2DownCommand, ec2LaunchCommand } from '../launcher/ec2/verbs';

/**
 * The ec2 provider's requests, checked exactly, with aws-sdk-client-mock standing in for EC2: a
 * small in-memory EC2 (instances, groups) answers the calls, and tests make chosen calls fail
 * (throttling, capacity, permissions) to check retries, waiter failures and the rollback.
 */

quietSdkNotice();
const client = new EC2Client({ region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'not-a-secret' } });
const mock = mockClient(client);

const FAST = { retry: { attempts: 4, baseMs: 1, capMs: 4 }, wait: { minDelay: 0.02, maxDelay: 0.05, maxWaitTime: 2 } };

function awsError(code: string, message: string, status = 400): Error {
  return Object.assign(new Error(message), { name: code, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status } });
}

/** A little EC2: enough state for launch, status and teardown to be checked end to end. */
class FakeEc2 {
  instances = new Map<string, Instance>();
  securityGroups = new Map<string, { GroupId: string; GroupName: string; Tags: Tag[] }>();
  placementGroups = new Map<string, { GroupName: string; Strategy: string; Tags: Tag[] }>();
  /** How instances answer DescribeInstances with ids: running at once unless a test says otherwise. */
  stateOf: (i: Instance) => Instance = (i) => ({ ...i, State: { Name: i.State?.Name === 'pending' ? 'running' : i.State?.Name } });
  private next = 1;

  install(): void {
    mock.reset();
    mock.on(DescribeSubnetsCommand).resolves({
      Subnets: [
        { SubnetId: 'subnet-1a', VpcId: 'vpc-1', AvailabilityZone: 'us-east-1a', DefaultForAz: true },
        { SubnetId: 'subnet-1b', VpcId: 'vpc-1', AvailabilityZone: 'us-east-1b', DefaultForAz: true },
      ],
    });
    mock.on(DescribeInstanceTypeOfferingsCommand).resolves({
      InstanceTypeOfferings: [
        { InstanceType: 'c5.xlarge', Location: 'us-east-1a' },
        { InstanceType: 'c5.xlarge', Location: 'us-east-1b' },
        { InstanceType: 'c5n.18xlarge', Location: 'us-east-1b' },
        { InstanceType: 'c7g.large', Location: 'us-east-1a' },
        { InstanceType: 'c7g.large', Location: 'us-east-1b' },
      ],
    });
    mock.on(DescribeInstanceTypesCommand).callsFake((input: { InstanceTypes: string[] }) => ({
      InstanceTypes: input.InstanceTypes.map((t) => ({
        InstanceType: t,
        ProcessorInfo: { SupportedArchitectures: t.startsWith('c7g') ? ['arm64'] : ['i386', 'x86_64'] },
        NetworkInfo: { EfaSupported: t === 'c5n.18xlarge' },
      })),
    }));
    mock.on(DescribeImagesCommand).callsFake((input: { Filters: Array<{ Name: string; Values: string[] }> }) => {
      const arch = input.Filters.find((f) => f.Name === 'architecture')!.Values[0];
      return {
        Images: [
          { ImageId: `ami-old-${arch}`, Name: `al2023-ami-2023.6.20250101.0-kernel-6.1-${arch}`, CreationDate: '2025-01-01T00:00:00.000Z' },
          { ImageId: `ami-new-${arch}`, Name: `al2023-ami-2023.9.20261101.0-kernel-6.1-${arch}`, CreationDate: '2026-11-01T00:00:00.000Z' },
        ],
      };
    });
    mock.on(CreateSecurityGroupCommand).callsFake((input: { GroupName: string; TagSpecifications: Array<{ Tags: Tag[] }> }) => {
      const GroupId = `sg-${String(this.next++).padStart(4, '0')}`;
      this.securityGroups.set(GroupId, { GroupId, GroupName: input.GroupName, Tags: input.TagSpecifications[0].Tags });
      return { GroupId };
    });
    mock.on(AuthorizeSecurityGroupIngressCommand).resolves({ Return: true });
    mock.on(DescribeSecurityGroupsCommand).callsFake(() => ({ SecurityGroups: [...this.securityGroups.values()] }));
    mock.on(DeleteSecurityGroupCommand).callsFake((input: { GroupId: string }) => {
      if (!this.securityGroups.delete(input.GroupId)) throw awsError('InvalidGroup.NotFound', `The security group '${input.GroupId}' does not exist`);
      return {};
    });
    mock.on(CreatePlacementGroupCommand).callsFake((input: { GroupName: string; Strategy: string; TagSpecifications: Array<{ Tags: Tag[] }> }) => {
      this.placementGroups.set(input.GroupName, { GroupName: input.GroupName, Strategy: input.Strategy, Tags: input.TagSpecifications[0].Tags });
      return {};
    });
    mock.on(DescribePlacementGroupsCommand).callsFake(() => ({ PlacementGroups: [...this.placementGroups.values()] }));
    mock.on(DeletePlacementGroupCommand).callsFake((input: { GroupName: string }) => {
      if (!this.placementGroups.delete(input.GroupName)) throw awsError('InvalidPlacementGroup.Unknown', `The Placement Group '${input.GroupName}' is unknown.`);
      return {};
    });
    mock.on(RunInstancesCommand).callsFake((input: RunInstancesCommandInput) => {
      const out: Instance[] = [];
      for (let k = 0; k < input.MinCount!; k++) {
        const id = `i-${String(this.next++).padStart(8, '0')}`;
        const inst: Instance = {
          InstanceId: id,
          AmiLaunchIndex: k,
          InstanceType: input.InstanceType,
          State: { Name: 'pending' },
          PrivateIpAddress: `10.0.0.${this.next}`,
          Placement: { AvailabilityZone: 'us-east-1b', GroupName: input.Placement?.GroupName },
          Tags: [...(input.TagSpecifications?.[0].Tags ?? [])],
        };
        this.instances.set(id, inst);
        out.push(inst);
      }
      return { Instances: out };
    });
    mock.on(CreateTagsCommand).callsFake((input: { Resources: string[]; Tags: Tag[] }) => {
      for (const r of input.Resources) {
        const inst = this.instances.get(r);
        if (!inst) throw awsError('InvalidInstanceID.NotFound', `The instance ID '${r}' does not exist`);
        inst.Tags = [...(inst.Tags ?? []).filter((t) => !input.Tags.some((n) => n.Key === t.Key)), ...input.Tags];
      }
      return {};
    });
    mock.on(DescribeInstancesCommand).callsFake((input: { InstanceIds?: string[]; Filters?: Array<{ Name: string; Values: string[] }> }) => {
      let list = [...this.instances.values()];
      if (input.InstanceIds) list = list.filter((i) => input.InstanceIds!.includes(i.InstanceId!)).map((i) => this.settle(i));
      for (const f of input.Filters ?? []) {
        if (f.Name === 'instance-state-name') list = list.filter((i) => f.Values.includes(i.State!.Name!));
        else if (f.Name === 'tag-key') list = list.filter((i) => i.Tags?.some((t) => f.Values.includes(t.Key!)));
        else if (f.Name.startsWith('tag:')) list = list.filter((i) => i.Tags?.some((t) => t.Key === f.Name.slice(4) && f.Values.includes(t.Value!)));
      }
      return { Reservations: list.length ? [{ Instances: list }] : [] };
    });
    mock.on(TerminateInstancesCommand).callsFake((input: { InstanceIds: string[] }) => {
      for (const id of input.InstanceIds) {
        const inst = this.instances.get(id);
        if (!inst) throw awsError('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
        inst.State = { Name: 'terminated' };
      }
      return { TerminatingInstances: input.InstanceIds.map((InstanceId) => ({ InstanceId, CurrentState: { Name: 'shutting-down' } })) };
    });
  }

  /** An instance as a poll sees it (and as it stays). */
  settle(i: Instance): Instance {
    if (i.State?.Name === 'terminated') return i;
    const seen = this.stateOf(i);
    i.State = seen.State;
    if (seen.StateReason) i.StateReason = seen.StateReason;
    return i;
  }

  live(): Instance[] {
    return [...this.instances.values()].filter((i) => i.State?.Name !== 'terminated');
  }
}

function pipeline(): SpawnPipeline {
  return {
    pipeline_id: 'p',
    pipeline_name: 'p',
    s3_bucket: 'spawn-red-p',
    on_failure: 'stop',
    stages: [
      {
        stage_id: 'source',
        instance_type: 'c5.xlarge',
        instance_count: 1,
        command: 'spawn-red run --flow flows.json --stage source',
        data_output: { mode: 'stream', protocol: 'zmq', pattern: 'push', port: 5555 },
      },
      {
        stage_id: 'train',
        instance_type: 'c5n.18xlarge',
        instance_count: 2,
        ami: 'ami-0abc1234',
        spot: true,
        efa_enabled: true,
        placement_group: 'auto',
        command: 'spawn-red run --flow flows.json --stage train',
        depends_on: ['source'],
        data_input: { mode: 'stream', source_stage: 'source', protocol: 'zmq', pattern: 'pull' },
        data_output: { mode: 'stream', protocol: 'quic', pattern: 'pub', port: 7000 },
      },
      {
        stage_id: 'sink',
        instance_type: 'c7g.large',
        instance_count: 1,
        placement_group: 'my-own-group',
        command: './sink',
        depends_on: ['train'],
        data_input: { mode: 'stream', source_stage: 'train', protocol: 'quic', pattern: 'sub' },
      },
    ],
  };
}

let fake: FakeEc2;
let home: string;
const savedHome = process.env.SPAWN_RED_HOME;
const OPTIONS: Ec2Options = { instanceProfile: 'spawn-red-peers', keyName: 'me' };

function api(extra: { dryRun?: boolean } = {}) {
  return new Ec2Api({ client: extra.dryRun ? undefined : client, dryRun: extra.dryRun, pipelineId: 'p', print: () => undefined, ...FAST });
}
function launch(p = pipeline(), options: Ec2Options = OPTIONS, a = api()) {
  return provision({ api: a, input: { pipeline: p, source: '/tmp/p.json' }, options, region: 'us-east-1', out: quietOutput, env: process.env });
}
const runCalls = () => mock.commandCalls(RunInstancesCommand).map((c) => c.args[0].input);
const stageOf = (input: RunInstancesCommandInput) => input.TagSpecifications![0].Tags!.find((t) => t.Key === 'spawn:stage-id')!.Value;

describe('ec2 provider with a mocked EC2 (aws-sdk-client-mock)', function () {
  beforeEach(function () {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-ec2-mock-'));
    process.env.SPAWN_RED_HOME = home;
    fake = new FakeEc2();
    fake.install();
  });
  afterEach(function () {
    if (savedHome === undefined) delete process.env.SPAWN_RED_HOME;
    else process.env.SPAWN_RED_HOME = savedHome;
    fs.rmSync(home, { recursive: true, force: true });
  });
  after(() => mock.restore());

  it('sends the exact requests: security group rules, cluster group, one RunInstances per stage (EFA, placement, spot, IMDSv2, tags), index tags', async function () {
    const state = await launch();
    assert.equal(state.status, 'running');

    // A zone that offers every type: c5n.18xlarge only in us-east-1b.
    const sg = mock.commandCalls(CreateSecurityGroupCommand)[0].args[0].input;
    assert.equal(sg.GroupName, 'spawn-red-p');
    assert.equal(sg.VpcId, 'vpc-1');
    const token = state.launch_token;
    assert.deepEqual(sg.TagSpecifications, [{ ResourceType: 'security-group', Tags: [{ Key: 'spawn:pipeline-id', Value: 'p' }, { Key: 'spawn-red:launch', Value: token }, { Key: 'Name', Value: 'spawn-red-p' }] }]);
    assert.deepEqual(mock.commandCalls(AuthorizeSecurityGroupIngressCommand)[0].args[0].input, {
      GroupId: 'sg-0001',
      IpPermissions: [
        { IpProtocol: '-1', UserIdGroupPairs: [{ GroupId: 'sg-0001', Description: 'EFA/RDMA: all traffic between the pipeline instances' }] },
        { IpProtocol: 'tcp', FromPort: 5555, ToPort: 5555, UserIdGroupPairs: [{ GroupId: 'sg-0001', Description: 'spawn-red stream from source' }] },
        { IpProtocol: 'udp', FromPort: 7000, ToPort: 7000, UserIdGroupPairs: [{ GroupId: 'sg-0001', Description: 'spawn-red stream from train' }] },
      ],
    });
    assert.deepEqual(mock.commandCalls(CreatePlacementGroupCommand)[0].args[0].input, {
      GroupName: 'spawn-red-p',
      Strategy: 'cluster',
      TagSpecifications: [{ ResourceType: 'placement-group', Tags: [{ Key: 'spawn:pipeline-id', Value: 'p' }, { Key: 'spawn-red:launch', Value: token }, { Key: 'Name', Value: 'spawn-red-p' }] }],
    });

    const runs = runCalls();
    assert.deepEqual(runs.map(stageOf), ['source', 'train', 'sink']);
    const tags = (stage: string, index: number) => [
      { Key: 'spawn:pipeline-id', Value: 'p' },
      { Key: 'spawn:stage-id', Value: stage },
      { Key: 'spawn:stage-index', Value: String(index) },
      { Key: 'spawn-red:launch', Value: token },
      { Key: 'Name', Value: `p-${stage}` },
    ];
    const { UserData, ...train } = runs[1];
    assert.match(Buffer.from(UserData!, 'base64').toString('utf8'), /^#!\/bin\/bash\n[^]*STAGE_ID=train\n/);
    assert.deepEqual(train, {
      ImageId: 'ami-0abc1234',
      InstanceType: 'c5n.18xlarge',
      MinCount: 2,
      MaxCount: 2,
      ClientToken: clientToken(token, 'train'),
      MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled', HttpPutResponseHopLimit: 1 },
      InstanceInitiatedShutdownBehavior: 'terminate',
      TagSpecifications: [
        { ResourceType: 'instance', Tags: tags('train', 1) },
        { ResourceType: 'volume', Tags: tags('train', 1) },
      ],
      KeyName: 'me',
      IamInstanceProfile: { Name: 'spawn-red-peers' },
      NetworkInterfaces: [{ DeviceIndex: 0, InterfaceType: 'efa', SubnetId: 'subnet-1b', Groups: ['sg-0001'], DeleteOnTermination: true }],
      Placement: { GroupName: 'spawn-red-p' },
      InstanceMarketOptions: { MarketType: 'spot', SpotOptions: { SpotInstanceType: 'one-time', InstanceInterruptionBehavior: 'terminate' } },
    });
    // Without EFA: the subnet and group on the request; the newest Amazon Linux 2023 for the architecture.
    assert.equal(runs[0].ImageId, 'ami-new-x86_64');
    assert.equal(runs[0].SubnetId, 'subnet-1b');
    assert.deepEqual(runs[0].SecurityGroupIds, ['sg-0001']);
    assert.equal(runs[0].NetworkInterfaces, undefined);
    assert.equal(runs[0].Placement, undefined);
    assert.equal(runs[0].InstanceMarketOptions, undefined);
    assert.equal(runs[2].ImageId, 'ami-new-arm64');
    assert.deepEqual(runs[2].Placement, { GroupName: 'my-own-group' });
    assert.equal(new Set(runs.map((r) => r.ClientToken)).size, 3);

    // Each instance its own index, DNS name and Name.
    const tagged = mock.commandCalls(CreateTagsCommand).map((c) => c.args[0].input);
    assert.equal(tagged.length, 4);
    const train1 = state.stages.find((s) => s.stage_id === 'train')!.instance_ids[1];
    assert.deepEqual(
      tagged.find((t) => t.Resources![0] === train1),
      { Resources: [train1], Tags: [{ Key: 'spawn:instance-index', Value: '1' }, { Key: 'spawn:dns-name', Value: 'train-1.p.spore.host' }, { Key: 'Name', Value: 'p-train-1' }] },
    );
    // The order: groups before instances, instances stage by stage, tags right after their stage.
    const order = mock.calls().map((c) => (c.args[0] as { constructor: { name: string } }).constructor.name.replace(/Command$/, ''));
    assert.ok(order.indexOf('AuthorizeSecurityGroupIngress') < order.indexOf('RunInstances'));
    assert.ok(order.indexOf('CreatePlacementGroup') < order.indexOf('RunInstances'));
    assert.equal(order.filter((o) => o === 'RunInstances').length, 3);

    const saved = readEc2State('p')!;
    assert.equal(saved.status, 'running');
    assert.equal(saved.security_group_id, 'sg-0001');
    assert.equal(saved.placement_group, 'spawn-red-p');
    assert.equal(saved.instances.filter((i) => i.state === 'running').length, 4);
  });

  it('SSH only when asked, from the CIDRs given; an instance profile ARN goes as Arn', async function () {
    await launch(pipeline(), { instanceProfile: 'arn:aws:iam::123456789012:instance-profile/peers', sshCidrs: ['203.0.113.7/32', '198.51.100.0/24'] });
    const rules = mock.commandCalls(AuthorizeSecurityGroupIngressCommand)[0].args[0].input.IpPermissions!;
    assert.deepEqual(rules[rules.length - 1], {
      IpProtocol: 'tcp',
      FromPort: 22,
      ToPort: 22,
      IpRanges: [
        { CidrIp: '203.0.113.7/32', Description: 'SSH (spawn-red --ssh-cidr)' },
        { CidrIp: '198.51.100.0/24', Description: 'SSH (spawn-red --ssh-cidr)' },
      ],
    });
    assert.ok(rules.slice(0, -1).every((r) => !r.IpRanges), 'stream ports are open to the group only');
    assert.deepEqual(runCalls()[0].IamInstanceProfile, { Arn: 'arn:aws:iam::123456789012:instance-profile/peers' });
  });

  it('refuses before any call: EFA on a type without it, credentials in the env, no instance profile for many instances', async function () {
    const noEfa = pipeline();
    noEfa.stages[0].efa_enabled = true;
    await assert.rejects(launch(noEfa), (e: Error) => /stage "source": c5\.xlarge has no EFA/.test(e.message));
    assert.equal(mock.commandCalls(CreateSecurityGroupCommand).length, 0);

    mock.resetHistory();
    const secret = pipeline();
    secret.stages[0].env = { AWS_SECRET_ACCESS_KEY: 'x' };
    await assert.rejects(launch(secret), (e: Error) => /env AWS_SECRET_ACCESS_KEY is a credential/.test(e.message));
    await assert.rejects(launch(pipeline(), {}), (e: Error) => /--instance-profile/.test(e.message));
    await assert.rejects(launch(pipeline(), { ...OPTIONS, packageSpec: 'https://user:hunter2@example.com/pkg.tgz' }), (e: Error) => /carries a credential/.test(e.message) && !e.message.includes('hunter2'));
    assert.equal(mock.calls().length, 0);
  });

  it('a dry run prints the calls and sends none', async function () {
    const printed: string[] = [];
    const a = new Ec2Api({ dryRun: true, pipelineId: 'p', print: (t) => printed.push(t), ...FAST });
    await launch(pipeline(), OPTIONS, a);
    assert.equal(mock.calls().length, 0);
    const ops = a.log.map((l) => l.op);
    assert.deepEqual(ops.slice(0, 7), ['DescribeSubnets', 'DescribeInstanceTypeOfferings', 'DescribeInstanceTypes', 'DescribeImages', 'DescribeImages', 'CreateSecurityGroup', 'AuthorizeSecurityGroupIngress']);
    assert.equal(ops.filter((o) => o === 'RunInstances').length, 3);
    assert.equal(ops[ops.length - 1], 'waitUntilInstanceRunning');
    assert.ok(printed.some((t) => t.startsWith('RunInstances (stage "train") {') && t.includes('"InterfaceType": "efa"')));
    assert.ok(!fs.existsSync(path.join(home, 'pipelines', 'p')), 'no state for a dry run');
  });

  it('retries throttling with backoff (same ClientToken), and says so in one line when it does not stop', async function () {
    mock.on(CreateSecurityGroupCommand).rejectsOnce(awsError('RequestLimitExceeded', 'Request limit exceeded.', 503)).rejectsOnce(awsError('RequestLimitExceeded', 'Request limit exceeded.', 503)).resolves({ GroupId: 'sg-9' });
    mock.on(RunInstancesCommand, { InstanceType: 'c5.xlarge' }).rejectsOnce(awsError('RequestLimitExceeded', 'Request limit exceeded.', 503)).callsFake((input: RunInstancesCommandInput) => ({
      Instances: [{ InstanceId: 'i-source', AmiLaunchIndex: 0, State: { Name: 'pending' }, Tags: input.TagSpecifications![0].Tags }],
    }));
    fake.instances.set('i-source', { InstanceId: 'i-source', State: { Name: 'pending' }, Tags: [] });
    mock.on(CreateTagsCommand).rejectsOnce(awsError('InvalidInstanceID.NotFound', "The instance ID 'i-source' does not exist")).resolves({});
    const state = await launch();
    assert.equal(state.status, 'running');
    assert.equal(mock.commandCalls(CreateSecurityGroupCommand).length, 3);
    const sourceRuns = runCalls().filter((r) => stageOf(r) === 'source');
    assert.equal(sourceRuns.length, 2);
    assert.equal(sourceRuns[0].ClientToken, sourceRuns[1].ClientToken, 'a retried RunInstances starts nothing twice');

    mock.on(DescribeSubnetsCommand).rejects(awsError('RequestLimitExceeded', 'Request limit exceeded.', 503));
    mock.resetHistory();
    const e = await launch().then(
      () => assert.fail('launched'),
      (x: unknown) => x,
    );
    assert.ok(e instanceof LaunchFailed);
    assert.equal(mock.commandCalls(DescribeSubnetsCommand).length, FAST.retry.attempts);
    assert.equal(e.message, 'DescribeSubnets (default subnets) failed: RequestLimitExceeded: Request limit exceeded. — EC2 kept throttling the requests after several retries: wait a minute and run the command again');
  });

  it('waiter failure: an instance terminated while starting fails the launch with its reason, and rolls back', async function () {
    fake.stateOf = (i) => {
      const index = i.Tags?.find((t) => t.Key === 'spawn:instance-index')?.Value;
      const stage = i.Tags?.find((t) => t.Key === 'spawn:stage-id')?.Value;
      if (stage === 'train' && index === '1') return { ...i, State: { Name: 'terminated' }, StateReason: { Code: 'Server.InsufficientInstanceCapacity', Message: 'Server.InsufficientInstanceCapacity: Insufficient capacity.' } };
      return { ...i, State: { Name: 'running' } };
    };
    const e = await launch().then(
      () => assert.fail('launched'),
      (x: unknown) => x as LaunchFailed,
    );
    assert.ok(e instanceof LaunchFailed);
    assert.match(e.message, /^waitUntilInstanceRunning failed: Server\.InsufficientInstanceCapacity: instance i-\d+ \(stage "train" instance 1\) is terminated: Server\.InsufficientInstanceCapacity: Insufficient capacity\. — AWS has no capacity/);
    assert.ok(!e.message.includes('\n'));
    assert.deepEqual(fake.live(), []);
    assert.equal(fake.securityGroups.size, 0);
    assert.equal(fake.placementGroups.size, 0);
    assert.equal(e.rollback!.terminated.length, 4);
    assert.equal(readEc2State('p')!.status, 'failed');
  });

  it('waiter timeout: instances that stay pending fail the launch after maxWaitTime, and roll back', async function () {
    fake.stateOf = (i) => ({ ...i, State: { Name: i.State?.Name === 'terminated' ? 'terminated' : 'pending' } });
    const started = Date.now();
    const a = new Ec2Api({ client, pipelineId: 'p', retry: FAST.retry, wait: { minDelay: 0.05, maxDelay: 0.1, maxWaitTime: 0.6 } });
    const e = await launch(pipeline(), OPTIONS, a).then(
      () => assert.fail('launched'),
      (x: unknown) => x as LaunchFailed,
    );
    assert.ok(Date.now() - started < 5000);
    assert.equal(e.cause.code, 'Timeout');
    assert.match(e.message, /^waitUntilInstanceRunning failed: Timeout: 0 of 4 instances running after 0\.6 s — /);
    assert.deepEqual(fake.live(), []);
  });

  it('waiter: a poll refused for permissions stops the wait at once (no polling until the timeout)', async function () {
    const original = fake;
    mock.on(DescribeInstancesCommand).callsFake((input: { InstanceIds?: string[]; Filters?: unknown[] }) => {
      if (input.InstanceIds) throw awsError('UnauthorizedOperation', 'You are not authorized to perform this operation. Encoded authorization failure message: AbCdEf0123456789abcdef', 403);
      return { Reservations: [{ Instances: original.live() }] };
    });
    const a = new Ec2Api({ client, pipelineId: 'p', retry: FAST.retry, wait: { minDelay: 0.05, maxDelay: 0.1, maxWaitTime: 30 } });
    const started = Date.now();
    const e = await launch(pipeline(), OPTIONS, a).then(
      () => assert.fail('launched'),
      (x: unknown) => x as LaunchFailed,
    );
    assert.ok(Date.now() - started < 5000, `waited ${Date.now() - started} ms`);
    assert.equal(
      e.message,
      'DescribeInstances (waitUntilInstanceRunning) failed: UnauthorizedOperation: You are not authorized to perform this operation. (encoded authorization message omitted) — the AWS identity in use lacks this permission: grant it the EC2 actions listed in the README ("Launch on EC2"), or use another profile',
    );
    // The rollback terminates what the launch started; waiting for that needs the same permission, and says so.
    assert.equal(mock.commandCalls(TerminateInstancesCommand).length, 1);
    assert.match(e.rollbackError!.message, /^DescribeInstances \(waitUntilInstanceTerminated\) failed: UnauthorizedOperation/);
  });

  it('half-way failure: RunInstances for stage 3 fails, nothing from stages 1-2 is left; one error line and the rollback line', async function () {
    const file = path.join(home, 'three.json');
    const p = pipeline();
    // A pipeline file the launcher validates: spawn's protocols.
    p.stages[1].data_output = { mode: 'stream', protocol: 'zmq', pattern: 'pub', port: 7000 };
    p.stages[2].data_input = { mode: 'stream', source_stage: 'train', protocol: 'zmq', pattern: 'sub' };
    fs.writeFileSync(file, JSON.stringify(p));
    mock.on(RunInstancesCommand, { InstanceType: 'c7g.large' }).rejects(awsError('InsufficientInstanceCapacity', 'We currently do not have sufficient c7g.large capacity in the Availability Zone you requested (us-east-1b).\nOur system will be working on provisioning additional capacity.', 500));
    const errors: string[] = [];
    const code = await ec2LaunchCommand(
      { positional: [file], flags: { provider: 'ec2', region: 'us-east-1', 'instance-profile': 'spawn-red-peers' } },
      { client, ...FAST, out: quietOutput, err: (l) => errors.push(l) },
    );
    assert.equal(code, 1);
    assert.equal(errors.length, 2, errors.join('\n'));
    assert.equal(
      errors[0],
      'spawn-red launch: RunInstances (stage "sink") failed: InsufficientInstanceCapacity: We currently do not have sufficient c7g.large capacity in the Availability Zone you requested (us-east-1b). Our system will be working on provisioning additional capacity. — AWS has no capacity for this instance type in this availability zone right now: try another --subnet (zone), another instance type, or later',
    );
    assert.match(errors[1], /^spawn-red launch: rolled back: terminated 3 instances, deleted placement group spawn-red-p, deleted security group sg-0001; nothing this launch created is left in EC2$/);
    // No retry for a capacity error: one call.
    assert.equal(runCalls().filter((r) => r.InstanceType === 'c7g.large').length, 1);
    const terminated = mock.commandCalls(TerminateInstancesCommand)[0].args[0].input.InstanceIds!.slice().sort();
    assert.deepEqual(terminated, [...fake.instances.keys()].sort());
    assert.deepEqual(fake.live(), []);
    assert.equal(fake.securityGroups.size, 0);
    assert.equal(fake.placementGroups.size, 0);
    assert.ok(!mock.commandCalls(DeletePlacementGroupCommand).some((c) => c.args[0].input.GroupName === 'my-own-group'), "a stage's own placement group is not ours to delete");
    const state = readEc2State('p')!;
    assert.equal(state.status, 'failed');
    assert.match(state.reason!, /InsufficientInstanceCapacity/);
  });

  it('down terminates by tag, waits, deletes the groups (retrying DependencyViolation), and is idempotent', async function () {
    await launch();
    // A leftover ec2.json does not know: an instance of the pipeline launched elsewhere (tagged) is found too.
    fake.instances.set('i-elsewhere', { InstanceId: 'i-elsewhere', State: { Name: 'running' }, Tags: [{ Key: 'spawn:pipeline-id', Value: 'p' }, { Key: 'spawn-red:launch', Value: 'other' }] });
    mock.on(DeleteSecurityGroupCommand).rejectsOnce(awsError('DependencyViolation', 'resource sg-0001 has a dependent object')).callsFake((input: { GroupId: string }) => {
      fake.securityGroups.delete(input.GroupId);
      return {};
    });
    const lines: string[] = [];
    const out = { info: (l: string) => lines.push(l), progress: () => undefined };
    const code = await ec2DownCommand({ positional: ['p'], flags: {} }, { client, ...FAST, out, err: (l) => lines.push(`ERR ${l}`) });
    assert.equal(code, 0, lines.join('\n'));
    assert.deepEqual(fake.live(), [], lines.join('\n'));
    assert.equal(fake.securityGroups.size, 0);
    assert.equal(fake.placementGroups.size, 0);
    assert.ok(lines.includes('  terminated 5 instances'), lines.join('\n'));
    assert.equal(mock.commandCalls(DeleteSecurityGroupCommand).length, 2, lines.join('\n'));
    assert.equal(readEc2State('p')!.status, 'down');

    mock.resetHistory();
    lines.length = 0;
    assert.equal(await ec2DownCommand({ positional: ['p'], flags: {} }, { client, ...FAST, out, err: (l) => lines.push(`ERR ${l}`) }), 0);
    assert.equal(mock.commandCalls(TerminateInstancesCommand).length, 0);
    assert.equal(mock.commandCalls(DeleteSecurityGroupCommand).length, 0);
    assert.match(lines[lines.length - 1], /^nothing of p is left in EC2/);
  });

  it('down without ec2.json finds the pipeline by tag alone', async function () {
    await launch();
    fs.rmSync(path.join(home, 'pipelines'), { recursive: true, force: true });
    const result = await teardown(api(), 'p', undefined, quietOutput);
    assert.equal(result.terminated.length, 4);
    assert.deepEqual(result.placementGroups, ['spawn-red-p']);
    assert.deepEqual(result.securityGroups, ['sg-0001']);
    assert.deepEqual(fake.live(), []);
  });

  it('a security group whose create was retried after a lost answer is adopted, not reported as a leftover', async function () {
    let created: { GroupId: string; GroupName: string; Tags: Tag[] } | undefined;
    mock
      .on(CreateSecurityGroupCommand)
      .callsFakeOnce((input: { GroupName: string; TagSpecifications: Array<{ Tags: Tag[] }> }) => {
        created = { GroupId: 'sg-lost', GroupName: input.GroupName, Tags: input.TagSpecifications[0].Tags };
        fake.securityGroups.set('sg-lost', created);
        throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
      })
      .rejects(awsError('InvalidGroup.Duplicate', "The security group 'spawn-red-p' already exists for VPC 'vpc-1'"));
    const state = await launch();
    assert.equal(state.security_group_id, 'sg-lost');
  });

  it('errors read as one line: API, code, message, what to do', function () {
    const e = toEc2Error('RunInstances (stage "a")', awsError('VcpuLimitExceeded', 'You have requested more vCPU capacity than your current vCPU limit of 32 allows.\n\nPlease visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment.'));
    assert.equal(
      e.message,
      'RunInstances (stage "a") failed: VcpuLimitExceeded: You have requested more vCPU capacity than your current vCPU limit of 32 allows. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment. — the account\'s vCPU quota for this instance family is too low: request an increase in Service Quotas, or launch fewer or smaller instances',
    );
    const creds = toEc2Error('DescribeSubnets', Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }));
    assert.match(creds.message, /^DescribeSubnets failed: CredentialsProviderError: Could not load credentials from any providers — no AWS credentials found: set AWS_PROFILE/);
    const region = toEc2Error('finding the AWS region', new Error('Region is missing'));
    assert.equal(region.message, 'finding the AWS region failed: RegionMissing — no AWS region configured: pass --region, or set AWS_REGION (or a region in ~/.aws/config)');
    assert.equal(oneLine('x'.repeat(400)).length, 300);
    for (const err of [e, creds, region]) assert.ok(err instanceof Ec2Error && !err.message.includes('\n'));
  });
});
