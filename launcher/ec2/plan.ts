import * as crypto from 'crypto';
import type { IpPermission, RunInstancesCommandInput, Tag } from '@aws-sdk/client-ec2';
import { topoOrder } from '../dag';
import type { DataConfig, SpawnPipeline, SpawnStage } from '../export';
import { Ec2PlanError } from './errors';

/**
 * The ec2 provider's plan, as pure functions of the pipeline and the options: the stages in
 * dependency order with their index, the security group's rules, whether a cluster placement
 * group is needed, and each stage's RunInstances request. provision.ts makes the calls.
 */

/** spawn's tags (shared/reference/spawn-formats.md), and spawn-red's own. */
export const TAG = {
  pipelineId: 'spawn:pipeline-id',
  stageId: 'spawn:stage-id',
  stageIndex: 'spawn:stage-index',
  instanceIndex: 'spawn:instance-index',
  dnsName: 'spawn:dns-name',
  /** A token per launch, on everything spawn-red creates: `down` touches only resources that carry it. */
  launch: 'spawn-red:launch',
} as const;

export interface Ec2Options {
  region?: string;
  keyName?: string;
  subnet?: string;
  instanceProfile?: string;
  /** What the instances `npm install`: a registry spec, a tarball URL, a git URL. */
  packageSpec?: string;
  /** CIDRs admitted to SSH (port 22); none: no SSH rule. */
  sshCidrs?: string[];
  /** The AMI for stages that name none (default: the newest Amazon Linux 2023 for the type's architecture). */
  ami?: string;
  dryRun?: boolean;
}

export interface StagePlan {
  stage: SpawnStage;
  /** The stage's position in dependency order (spawn:stage-index). */
  index: number;
  efa: boolean;
  spot: boolean;
  /** The placement group its instances go in: the pipeline's cluster group, a named group, or none. */
  placementGroup?: string;
}

export const resourceName = (pipelineId: string) => `spawn-red-${pipelineId}`;
export const dnsName = (pipelineId: string, stageId: string, index: number) => `${stageId}-${index}.${pipelineId}.spore.host`;
export const instanceName = (pipelineId: string, stageId: string, index: number) => `${pipelineId}-${stageId}-${index}`;

export function newLaunchToken(pipelineId: string): string {
  return `${pipelineId.slice(0, 24)}-${Date.now().toString(36)}-${crypto.randomBytes(4).toString('hex')}`;
}

/** RunInstances' idempotency token for one stage of one launch (a retried call starts nothing twice). */
export function clientToken(launchToken: string, stageId: string): string {
  return crypto.createHash('sha256').update(`${launchToken}\0${stageId}`).digest('hex').slice(0, 64);
}

/** A stage wants the pipeline's cluster placement group: `placement_group: "auto"`, or EFA. */
export function wantsClusterGroup(stage: SpawnStage): boolean {
  return stage.placement_group === 'auto' || (Boolean(stage.efa_enabled) && !stage.placement_group);
}

export function stagePlans(pipeline: SpawnPipeline): StagePlan[] {
  const order = topoOrder(
    pipeline.stages.map((s) => s.stage_id),
    (id) => pipeline.stages.find((s) => s.stage_id === id)?.depends_on ?? [],
  ).order;
  const group = resourceName(pipeline.pipeline_id);
  return order.map((id, index) => {
    const stage = pipeline.stages.find((s) => s.stage_id === id)!;
    const named = stage.placement_group && stage.placement_group !== 'auto' ? stage.placement_group : undefined;
    return {
      stage,
      index,
      efa: Boolean(stage.efa_enabled),
      spot: Boolean(stage.spot),
      placementGroup: named ?? (wantsClusterGroup(stage) ? group : undefined),
    };
  });
}

/** The name of the cluster placement group the launch creates, or undefined when no stage wants one. */
export function clusterGroupName(pipeline: SpawnPipeline): string | undefined {
  return pipeline.stages.some(wantsClusterGroup) ? resourceName(pipeline.pipeline_id) : undefined;
}

function outputsOf(stage: SpawnStage): DataConfig[] {
  return [...(stage.data_outputs ?? []), ...(stage.data_output ? [stage.data_output] : [])];
}

/**
 * The stream ports a pipeline listens on, by IP protocol: TCP for ZeroMQ (and gRPC, plain TCP,
 * RDMA's address exchange), UDP for QUIC; a protocol we do not know gets both.
 */
export function streamPorts(pipeline: SpawnPipeline): Array<{ ipProtocol: 'tcp' | 'udp'; port: number; stages: string[] }> {
  const out = new Map<string, { ipProtocol: 'tcp' | 'udp'; port: number; stages: string[] }>();
  const add = (ipProtocol: 'tcp' | 'udp', port: number, stage: string) => {
    const key = `${ipProtocol}/${port}`;
    const e = out.get(key) ?? out.set(key, { ipProtocol, port, stages: [] }).get(key)!;
    if (!e.stages.includes(stage)) e.stages.push(stage);
  };
  for (const stage of pipeline.stages) {
    for (const o of outputsOf(stage)) {
      const port = Number(o.port);
      if (o.mode !== 'stream' || !Number.isInteger(port) || port < 1 || port > 65535) continue;
      const protocol = String(o.protocol ?? 'zmq').toLowerCase();
      // A pattern node's transport (an extra field of spawn-red's export): quic listens on UDP, auto on both.
      const transport = String(o.transport ?? '');
      if (transport === 'quic') add('udp', port, stage.stage_id);
      else if (transport === 'auto') {
        add('tcp', port, stage.stage_id);
        add('udp', port, stage.stage_id);
      } else if (protocol === 'quic') add('udp', port, stage.stage_id);
      else if (['zmq', 'tcp', 'grpc', 'rdma'].includes(protocol)) add('tcp', port, stage.stage_id);
      else {
        add('tcp', port, stage.stage_id);
        add('udp', port, stage.stage_id);
      }
    }
  }
  return [...out.values()].sort((a, b) => a.port - b.port || a.ipProtocol.localeCompare(b.ipProtocol));
}

/** RDMA streams (EFA, or libfabric's TCP provider where EFA is absent) use ports of their own choosing. */
export function needsAllTrafficFromSelf(pipeline: SpawnPipeline): boolean {
  return pipeline.stages.some((s) => s.efa_enabled || outputsOf(s).some((o) => o.protocol === 'rdma') || s.data_input?.protocol === 'rdma');
}

/**
 * The security group's inbound rules: the stream ports only from the group itself; everything
 * from itself when a stage uses EFA (AWS requires it for EFA) or RDMA; SSH only from the CIDRs asked.
 */
export function ingressRules(pipeline: SpawnPipeline, groupId: string, sshCidrs: string[] = []): IpPermission[] {
  const rules: IpPermission[] = [];
  if (needsAllTrafficFromSelf(pipeline)) {
    rules.push({ IpProtocol: '-1', UserIdGroupPairs: [{ GroupId: groupId, Description: 'EFA/RDMA: all traffic between the pipeline instances' }] });
  }
  for (const p of streamPorts(pipeline)) {
    rules.push({
      IpProtocol: p.ipProtocol,
      FromPort: p.port,
      ToPort: p.port,
      UserIdGroupPairs: [{ GroupId: groupId, Description: `spawn-red stream from ${p.stages.join(', ')}`.slice(0, 255) }],
    });
  }
  if (sshCidrs.length) {
    rules.push({ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: sshCidrs.map((c) => ({ CidrIp: c, Description: 'SSH (spawn-red --ssh-cidr)' })) });
  }
  return rules;
}

export function pipelineTags(pipelineId: string, launchToken: string, name: string): Tag[] {
  return [
    { Key: TAG.pipelineId, Value: pipelineId },
    { Key: TAG.launch, Value: launchToken },
    { Key: 'Name', Value: name },
  ];
}

export interface ResolvedNetwork {
  subnetId: string;
  vpcId: string;
  availabilityZone: string;
}

/** One RunInstances for a stage: every instance of it (MinCount = MaxCount = instance_count). */
export function runInstancesInput(
  pipeline: SpawnPipeline,
  plan: StagePlan,
  resolved: { imageId: string; network: ResolvedNetwork; securityGroupId: string; userData: string; launchToken: string },
  options: Ec2Options,
): RunInstancesCommandInput {
  const { stage } = plan;
  const id = pipeline.pipeline_id;
  const tags: Tag[] = [
    { Key: TAG.pipelineId, Value: id },
    { Key: TAG.stageId, Value: stage.stage_id },
    { Key: TAG.stageIndex, Value: String(plan.index) },
    { Key: TAG.launch, Value: resolved.launchToken },
    // Instances of one call share these tags; CreateTags gives each its index, DNS name and Name after launch.
    { Key: 'Name', Value: `${id}-${stage.stage_id}` },
  ];
  const input: RunInstancesCommandInput = {
    ImageId: resolved.imageId,
    InstanceType: stage.instance_type as RunInstancesCommandInput['InstanceType'],
    MinCount: stage.instance_count,
    MaxCount: stage.instance_count,
    ClientToken: clientToken(resolved.launchToken, stage.stage_id),
    UserData: Buffer.from(resolved.userData, 'utf8').toString('base64'),
    MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled', HttpPutResponseHopLimit: 1 },
    InstanceInitiatedShutdownBehavior: 'terminate',
    TagSpecifications: [
      { ResourceType: 'instance', Tags: tags },
      { ResourceType: 'volume', Tags: tags },
    ],
  };
  if (options.keyName) input.KeyName = options.keyName;
  if (options.instanceProfile) {
    input.IamInstanceProfile = options.instanceProfile.startsWith('arn:') ? { Arn: options.instanceProfile } : { Name: options.instanceProfile };
  }
  if (plan.efa) {
    // An EFA interface carries the subnet and the security group itself (they may not be given twice).
    input.NetworkInterfaces = [
      { DeviceIndex: 0, InterfaceType: 'efa', SubnetId: resolved.network.subnetId, Groups: [resolved.securityGroupId], DeleteOnTermination: true },
    ];
  } else {
    input.SubnetId = resolved.network.subnetId;
    input.SecurityGroupIds = [resolved.securityGroupId];
  }
  if (plan.placementGroup) input.Placement = { GroupName: plan.placementGroup };
  if (plan.spot) {
    input.InstanceMarketOptions = { MarketType: 'spot', SpotOptions: { SpotInstanceType: 'one-time', InstanceInterruptionBehavior: 'terminate' } };
  }
  return input;
}

/** The launch region: --region, else the stages' own region (one for all), else the SDK chain (undefined). */
export function launchRegion(pipeline: SpawnPipeline, flag: string | undefined): string | undefined {
  const regions = [...new Set(pipeline.stages.map((s) => s.region).filter((r): r is string => Boolean(r)))];
  if (flag) {
    const other = pipeline.stages.filter((s) => s.region && s.region !== flag);
    if (other.length) {
      throw new Ec2PlanError(other.map((s) => `stage "${s.stage_id}": region is ${s.region}, but the launch is in ${flag} (--region): one launch uses one region`));
    }
    return flag;
  }
  if (regions.length > 1) {
    throw new Ec2PlanError([`the stages name ${regions.length} regions (${regions.join(', ')}): one launch uses one region; set the same region on every stage, or pass --region`]);
  }
  return regions[0];
}

const CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/** Problems with the options, before any call. */
export function optionProblems(pipeline: SpawnPipeline, options: Ec2Options): string[] {
  const problems: string[] = [];
  for (const c of options.sshCidrs ?? []) {
    const m = CIDR.exec(c);
    if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || Number(m[5]) > 32) problems.push(`--ssh-cidr ${c}: not an IPv4 CIDR such as 203.0.113.7/32`);
  }
  if (options.subnet !== undefined && !/^subnet-[0-9a-f]+$/.test(options.subnet)) problems.push(`--subnet ${options.subnet}: not a subnet id (subnet-…)`);
  if (options.ami !== undefined && !/^ami-[0-9a-f]+$/.test(options.ami)) problems.push(`--ami ${options.ami}: not an AMI id (ami-…)`);
  for (const s of pipeline.stages) {
    if (s.ami !== undefined && s.ami !== '' && !/^ami-[0-9a-f]+$/.test(s.ami)) problems.push(`stage "${s.stage_id}": ami ${s.ami} is not an AMI id (ami-…)`);
  }
  const total = pipeline.stages.reduce((n, s) => n + s.instance_count, 0);
  if (total > 1 && !options.instanceProfile) {
    problems.push(
      'the instances find each other with ec2:DescribeInstances and need an instance profile that allows it: pass --instance-profile NAME (README, "Launch on EC2", shows the policy)',
    );
  }
  return problems;
}
