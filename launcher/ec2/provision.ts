import type { Filter, Instance, IpPermission } from '@aws-sdk/client-ec2';
import type { LaunchInput } from '../local/plan';
import { Ec2Api, WaitProgress } from './api';
import { Ec2Error, Ec2PlanError } from './errors';
import {
  clusterGroupName,
  dnsName,
  Ec2Options,
  ingressRules,
  instanceName,
  newLaunchToken,
  optionProblems,
  pipelineTags,
  resourceName,
  ResolvedNetwork,
  runInstancesInput,
  StagePlan,
  stagePlans,
  TAG,
} from './plan';
import { Ec2InstanceState, Ec2State, writeEc2State } from './state';
import { defaultPackageSpec, renderUserData, secretProblems, sizeProblem } from './user-data';
import { pipelineDir } from '../local/state';
import { addCurveSecrets, curveKeyFileText, flowUsesCurve, launchCurveKeys } from './curve-secrets';
import { caDirOf, InstanceSecrets, launchSecretsPath, pipelineSecretsPath, quicInstanceSecrets, secretPathProblems, SecretStore, stageSecretsPath } from './secrets';

/**
 * The ec2 provider's steps. Launch: subnet and zone, instance types and AMIs, the pipeline's
 * security group and cluster placement group, one RunInstances per stage (dependencies first),
 * each instance's index tags, then the SDK waiter until every instance runs. Any failure on the
 * way rolls back: everything the launch created is removed (teardown, as `down` does). Teardown
 * finds the pipeline's resources by tag as well as from ec2.json, so it cleans up after a launch
 * that was killed, and is idempotent.
 */

/** What the steps say to the user: a line, or a progress line that replaces the last one on a terminal. */
export interface Output {
  info(line: string): void;
  progress(line: string): void;
}

export const quietOutput: Output = { info: () => undefined, progress: () => undefined };

/** Terminal output: progress lines rewrite themselves on a TTY, and print only when they change elsewhere. */
export function consoleOutput(stream: NodeJS.WriteStream = process.stdout): Output {
  let last = '';
  let open = false;
  return {
    info(line) {
      if (open) stream.write('\n');
      open = false;
      last = '';
      stream.write(`${line}\n`);
    },
    progress(line) {
      if (line === last) return;
      last = line;
      if (stream.isTTY) {
        stream.write(`\r\x1b[K${line}`);
        open = true;
      } else stream.write(`${line}\n`);
    },
  };
}

export function describeProgress(what: string, p: WaitProgress): string {
  const parts = Object.entries(p.states)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([state, n]) => `${state} ${n}`);
  return `  ${what}: ${parts.length ? parts.join(', ') : 'not visible yet'} (of ${p.total})`;
}

export interface LaunchContext {
  api: Ec2Api;
  input: LaunchInput;
  options: Ec2Options;
  /** The region the client uses (resolved by the caller; a placeholder in a dry run without one). */
  region: string;
  out: Output;
  /** Where ec2.json goes (SPAWN_RED_HOME). */
  env?: NodeJS.ProcessEnv;
  abortSignal?: AbortSignal;
  /** Called with each stage's user data (the dry run's --show-user-data). */
  onUserData?: (stageId: string, script: string) => void;
  /**
   * Ship each instance a QUIC certificate through SSM Parameter Store (secrets.ts): set when the
   * flow uses QUIC. The user data then carries the parameters' path, never their values.
   */
  secrets?: SecretStore;
  /**
   * Which secrets the SecretStore ships: QUIC certificates and/or the CurveZMQ key file
   * (curve-secrets.ts). Default: QUIC, plus Curve when the flow has a node with encryption curve.
   */
  secretKinds?: { quic: boolean; curve: boolean };
}

/** What `ctx.secrets` ships (see LaunchContext.secretKinds). */
export function secretKindsOf(ctx: Pick<LaunchContext, 'input' | 'secrets' | 'secretKinds'>): { quic: boolean; curve: boolean } {
  if (!ctx.secrets) return { quic: false, curve: false };
  return ctx.secretKinds ?? { quic: true, curve: flowUsesCurve(ctx.input.flow) };
}

/** A launch that failed and was rolled back (or could not be completely). */
export class LaunchFailed extends Error {
  constructor(
    override readonly cause: Ec2Error,
    readonly rollback: TeardownResult | undefined,
    readonly rollbackError: Ec2Error | undefined,
  ) {
    super(cause.message);
    this.name = 'LaunchFailed';
  }
}

/** The pipeline's resources that spawn-red created; with a launch token, only that launch's. */
const tagFilters = (pipelineId: string, launchToken?: string): Filter[] => [
  { Name: `tag:${TAG.pipelineId}`, Values: [pipelineId] },
  launchToken ? { Name: `tag:${TAG.launch}`, Values: [launchToken] } : { Name: 'tag-key', Values: [TAG.launch] },
];

/** Subnet, VPC and zone: --subnet, else a default subnet in the first zone that offers every instance type. */
export async function resolveNetwork(api: Ec2Api, subnet: string | undefined, instanceTypes: string[]): Promise<ResolvedNetwork> {
  if (subnet) {
    const out = await api.call('DescribeSubnets', { SubnetIds: [subnet] }, { what: '--subnet' });
    const s = out.Subnets?.[0];
    if (!s?.SubnetId || !s.VpcId || !s.AvailabilityZone) throw new Ec2Error('DescribeSubnets (--subnet)', 'InvalidSubnetID.NotFound', `no subnet ${subnet}`, 'check --subnet (aws ec2 describe-subnets)');
    return { subnetId: s.SubnetId, vpcId: s.VpcId, availabilityZone: s.AvailabilityZone };
  }
  const subnets = (await api.call('DescribeSubnets', { Filters: [{ Name: 'default-for-az', Values: ['true'] }] }, { what: 'default subnets' })).Subnets ?? [];
  if (subnets.length === 0) {
    throw new Ec2Error('DescribeSubnets', 'NoDefaultVpc', 'this region has no default VPC (or no default subnets)', 'pass --subnet subnet-… (a subnet with a route to the internet, for npm install)');
  }
  const offered = await api.call('DescribeInstanceTypeOfferings', {
    LocationType: 'availability-zone',
    Filters: [{ Name: 'instance-type', Values: [...new Set(instanceTypes)] }],
  });
  const zones = new Map<string, Set<string>>();
  for (const o of offered.InstanceTypeOfferings ?? []) {
    if (o.Location && o.InstanceType) (zones.get(o.Location) ?? zones.set(o.Location, new Set()).get(o.Location)!).add(o.InstanceType);
  }
  const types = new Set(instanceTypes);
  const fits = subnets
    .filter((s) => s.AvailabilityZone && [...types].every((t) => zones.get(s.AvailabilityZone!)?.has(t)))
    .sort((a, b) => a.AvailabilityZone!.localeCompare(b.AvailabilityZone!));
  const s = fits[0];
  if (!s) {
    throw new Ec2Error(
      'DescribeInstanceTypeOfferings',
      'Unsupported',
      `no availability zone with a default subnet offers all of ${[...types].join(', ')}`,
      'choose instance types offered in one zone, or pass --subnet',
    );
  }
  return { subnetId: s.SubnetId!, vpcId: s.VpcId!, availabilityZone: s.AvailabilityZone! };
}

export interface TypeInfo {
  architecture: 'x86_64' | 'arm64';
  efaSupported: boolean;
}

export async function describeTypes(api: Ec2Api, instanceTypes: string[]): Promise<Map<string, TypeInfo>> {
  const unique = [...new Set(instanceTypes)];
  const out = await api.call('DescribeInstanceTypes', { InstanceTypes: unique as never });
  const info = new Map<string, TypeInfo>();
  for (const t of out.InstanceTypes ?? []) {
    const archs = t.ProcessorInfo?.SupportedArchitectures ?? [];
    info.set(String(t.InstanceType), { architecture: archs.includes('x86_64') ? 'x86_64' : 'arm64', efaSupported: Boolean(t.NetworkInfo?.EfaSupported) });
  }
  const unknown = unique.filter((t) => !info.has(t));
  if (unknown.length) throw new Ec2Error('DescribeInstanceTypes', 'InvalidInstanceType', `unknown instance type ${unknown.join(', ')}`, "fix the stage's instance_type");
  return info;
}

/** The newest Amazon Linux 2023 AMI for an architecture (Amazon's own images, standard kernel flavour first by date). */
export async function latestAmazonLinux(api: Ec2Api, architecture: string): Promise<string> {
  const out = await api.call(
    'DescribeImages',
    {
      Owners: ['amazon'],
      Filters: [
        { Name: 'name', Values: [`al2023-ami-2023.*-${architecture}`] },
        { Name: 'architecture', Values: [architecture] },
        { Name: 'state', Values: ['available'] },
      ],
    },
    { what: `Amazon Linux 2023 ${architecture}` },
  );
  const images = (out.Images ?? []).filter((i) => i.ImageId);
  images.sort((a, b) => (b.CreationDate ?? '').localeCompare(a.CreationDate ?? '') || (b.Name ?? '').localeCompare(a.Name ?? ''));
  if (!images[0]) throw new Ec2Error('DescribeImages', 'NoImage', `no Amazon Linux 2023 ${architecture} AMI found`, "give the stage an ami, or pass --ami");
  return images[0].ImageId!;
}

function save(ctx: { api: Ec2Api; env?: NodeJS.ProcessEnv }, state: Ec2State): void {
  if (!ctx.api.dryRun) writeEc2State(state, ctx.env);
}

function describeRule(p: IpPermission, groupId: string): string {
  const proto = p.IpProtocol === '-1' ? 'all traffic' : `${p.IpProtocol} ${p.FromPort}`;
  const from = p.UserIdGroupPairs?.some((g) => g.GroupId === groupId) ? 'from the group itself' : `from ${(p.IpRanges ?? []).map((r) => r.CidrIp).join(', ')}`;
  return `${proto} ${from}`;
}

/** The security group: created with the pipeline's tags, or adopted when a retried create finds our own. */
async function createSecurityGroup(ctx: LaunchContext, state: Ec2State, network: ResolvedNetwork): Promise<string> {
  const { api } = ctx;
  const id = state.pipeline_id;
  const name = resourceName(id);
  try {
    const out = await api.call('CreateSecurityGroup', {
      GroupName: name,
      Description: `spawn-red pipeline ${id}: stream ports from itself only`,
      VpcId: network.vpcId,
      TagSpecifications: [{ ResourceType: 'security-group', Tags: pipelineTags(id, state.launch_token, name) }],
    });
    return out.GroupId!;
  } catch (e) {
    if (!(e instanceof Ec2Error) || e.code !== 'InvalidGroup.Duplicate') throw e;
    // A create that AWS did, but whose answer was lost and retried, finds the group with our launch tag.
    const found = await api.call('DescribeSecurityGroups', { Filters: [{ Name: 'group-name', Values: [name] }, { Name: 'vpc-id', Values: [network.vpcId] }] });
    const mine = found.SecurityGroups?.find((g) => g.Tags?.some((t) => t.Key === TAG.launch && t.Value === state.launch_token));
    if (mine?.GroupId) return mine.GroupId;
    throw e;
  }
}

async function createPlacementGroup(ctx: LaunchContext, state: Ec2State, name: string): Promise<void> {
  const { api } = ctx;
  try {
    await api.call('CreatePlacementGroup', {
      GroupName: name,
      Strategy: 'cluster',
      TagSpecifications: [{ ResourceType: 'placement-group', Tags: pipelineTags(state.pipeline_id, state.launch_token, name) }],
    });
  } catch (e) {
    if (!(e instanceof Ec2Error) || e.code !== 'InvalidPlacementGroup.Duplicate') throw e;
    const found = await api.call('DescribePlacementGroups', { GroupNames: [name] });
    if (!found.PlacementGroups?.some((g) => g.Tags?.some((t) => t.Key === TAG.launch && t.Value === state.launch_token))) throw e;
  }
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new Ec2Error('launch', 'Interrupted', '', 'stopped on request');
}

/** Everything that can be checked before the first call: options, secrets, each stage's user data and its size. */
export function prepareLaunch(ctx: Pick<LaunchContext, 'input' | 'options' | 'region' | 'secrets' | 'secretKinds'>, curvePublicKey?: string): { plans: StagePlan[]; userData: Map<string, string>; launchToken: string; packageSpec: string } {
  const { pipeline, flow } = ctx.input;
  const packageSpec = ctx.options.packageSpec ?? defaultPackageSpec();
  const problems = [...optionProblems(pipeline, ctx.options), ...secretProblems(pipeline, flow, packageSpec)];
  const plans = stagePlans(pipeline);
  const launchToken = newLaunchToken(pipeline.pipeline_id);
  if (ctx.secrets) {
    problems.push(...secretPathProblems(pipeline.pipeline_id));
    if (!ctx.options.instanceProfile) {
      const kinds = secretKindsOf(ctx);
      const what = [kinds.quic ? 'QUIC' : '', kinds.curve ? 'CurveZMQ encryption' : ''].filter(Boolean).join(' and ');
      const reads = [kinds.quic ? 'its certificate' : '', kinds.curve ? 'the pipeline\'s CurveZMQ keys' : ''].filter(Boolean).join(' and ');
      problems.push(`the flow uses ${what}: each instance reads ${reads} from SSM Parameter Store with its instance profile: pass --instance-profile NAME (README, "QUIC on EC2", shows the policy)`);
    }
  }
  const userData = new Map<string, string>();
  for (const p of plans) {
    try {
      const secretsPath = ctx.secrets ? stageSecretsPath(pipeline.pipeline_id, launchToken, p.stage.stage_id) : undefined;
      const script = renderUserData({ pipeline, stage: p.stage, stageIndex: p.index, region: ctx.region, launchToken, packageSpec, flow, efa: p.efa, secretsPath, curvePublicKey });
      userData.set(p.stage.stage_id, script);
      const big = sizeProblem(p.stage.stage_id, script, flow);
      if (big) problems.push(big);
    } catch (e) {
      if (e instanceof Ec2PlanError) problems.push(...e.problems);
      else throw e;
    }
  }
  if (problems.length) throw new Ec2PlanError(problems);
  return { plans, userData, launchToken, packageSpec };
}

/**
 * Launch the pipeline. Resolves with the state once every instance runs; on a failure, rolls back
 * and throws LaunchFailed (or Ec2PlanError for a plan refused before any call).
 */
export async function provision(ctx: LaunchContext): Promise<Ec2State> {
  const { api, input, options, out } = ctx;
  const { pipeline } = input;
  const id = pipeline.pipeline_id;
  // CurveZMQ: one key pair per launch, in memory only; its public key goes in the user data (a dry run shows a placeholder).
  const curveKeys = secretKindsOf(ctx).curve && !api.dryRun ? launchCurveKeys() : undefined;
  const curvePublicKey = secretKindsOf(ctx).curve ? (curveKeys?.publicKey ?? '<curve public key: made at launch>') : undefined;
  const { plans, userData, launchToken, packageSpec } = prepareLaunch(ctx, curvePublicKey);
  for (const [stageId, script] of userData) ctx.onUserData?.(stageId, script);
  const clusterGroup = clusterGroupName(pipeline);
  const state: Ec2State = {
    pipeline_id: id,
    provider: 'ec2',
    status: 'launching',
    launch_token: launchToken,
    region: ctx.region,
    endpoint: process.env.AWS_ENDPOINT_URL_EC2 || process.env.AWS_ENDPOINT_URL || undefined,
    source: input.source,
    package: packageSpec,
    launched_at: new Date().toISOString(),
    stages: plans.map((p) => ({
      stage_id: p.stage.stage_id,
      stage_index: p.index,
      instance_type: p.stage.instance_type,
      instance_count: p.stage.instance_count,
      spot: p.spot,
      efa: p.efa,
      placement_group: p.placementGroup,
      instance_ids: [],
    })),
    instances: [],
  };
  const total = plans.reduce((n, p) => n + p.stage.instance_count, 0);
  out.info(`spawn-red: launching ${id} on EC2 in ${ctx.region}: ${total} instance${total === 1 ? '' : 's'} of ${plans.length} stage${plans.length === 1 ? '' : 's'}; they install ${packageSpec}${options.packageSpec ? '' : ' from the npm registry (--package installs another)'}`);
  save(ctx, state);

  try {
    const network = await resolveNetwork(api, options.subnet, plans.map((p) => p.stage.instance_type));
    Object.assign(state, { vpc_id: network.vpcId, subnet_id: network.subnetId, availability_zone: network.availabilityZone });
    save(ctx, state);

    const types = await describeTypes(api, plans.map((p) => p.stage.instance_type));
    const noEfa = plans.filter((p) => p.efa && !types.get(p.stage.instance_type)?.efaSupported);
    if (noEfa.length) {
      throw new Ec2PlanError(noEfa.map((p) => `stage "${p.stage.stage_id}": ${p.stage.instance_type} has no EFA (efa_enabled): choose an instance type with EFA, e.g. c5n.18xlarge, c6in.32xlarge, hpc7g.16xlarge`));
    }
    const amis = new Map<string, string>();
    const latest = new Map<string, string>();
    for (const p of plans) {
      let ami = p.stage.ami || options.ami;
      if (!ami) {
        const arch = types.get(p.stage.instance_type)!.architecture;
        if (!latest.has(arch)) latest.set(arch, await latestAmazonLinux(api, arch));
        ami = latest.get(arch)!;
      }
      amis.set(p.stage.stage_id, ami);
      state.stages.find((s) => s.stage_id === p.stage.stage_id)!.ami = ami;
    }
    checkAborted(ctx.abortSignal);

    if (ctx.secrets) await shipSecrets(ctx, state, plans, curveKeys ? curveKeyFileText(curveKeys) : undefined);

    const groupId = await createSecurityGroup(ctx, state, network);
    state.security_group_id = groupId;
    save(ctx, state);
    const rules = ingressRules(pipeline, groupId, options.sshCidrs);
    if (rules.length) {
      await api.call('AuthorizeSecurityGroupIngress', { GroupId: groupId, IpPermissions: rules }, { retryOn: ['InvalidGroup.NotFound'], okOn: ['InvalidPermission.Duplicate'] });
    }
    out.info(`  security group ${groupId} (${resourceName(id)}): ${rules.map((r) => describeRule(r, groupId)).join('; ') || 'no inbound rules'}`);

    if (clusterGroup) {
      await createPlacementGroup(ctx, state, clusterGroup);
      state.placement_group = clusterGroup;
      save(ctx, state);
      out.info(`  placement group ${clusterGroup} (cluster)`);
    }

    for (const p of plans) {
      checkAborted(ctx.abortSignal);
      const stageId = p.stage.stage_id;
      const request = runInstancesInput(pipeline, p, { imageId: amis.get(stageId)!, network, securityGroupId: groupId, userData: userData.get(stageId)!, launchToken }, options);
      const run = await api.call('RunInstances', request, {
        what: `stage "${stageId}"`,
        // Just created: the group or placement group may not be visible to RunInstances for a moment.
        retryOn: ['InvalidGroup.NotFound', 'InvalidPlacementGroup.Unknown'],
      });
      const launched = (run.Instances ?? []).slice().sort((a, b) => (a.AmiLaunchIndex ?? 0) - (b.AmiLaunchIndex ?? 0));
      const ids = launched.map((i) => i.InstanceId!).filter(Boolean);
      const stageState = state.stages.find((s) => s.stage_id === stageId)!;
      stageState.instance_ids = ids;
      launched.forEach((i, index) => state.instances.push({ instance_id: i.InstanceId!, stage_id: stageId, index, state: i.State?.Name }));
      save(ctx, state);
      const what = [p.stage.instance_type, amis.get(stageId), p.efa ? 'EFA' : '', p.spot ? 'spot' : 'on-demand', p.placementGroup ? `placement group ${p.placementGroup}` : ''].filter(Boolean).join(', ');
      out.info(`  stage ${stageId}: ${p.stage.instance_count} × ${what} → ${ids.join(', ')}`);
      // RunInstances tags every instance alike: each gets its own index, DNS name and Name now.
      for (const [index, instanceId] of ids.entries()) {
        await api.call(
          'CreateTags',
          {
            Resources: [instanceId],
            Tags: [
              { Key: TAG.instanceIndex, Value: String(index) },
              { Key: TAG.dnsName, Value: dnsName(id, stageId, index) },
              { Key: 'Name', Value: instanceName(id, stageId, index) },
            ],
          },
          { what: `${stageId} instance ${index}`, retryOn: ['InvalidInstanceID.NotFound'] },
        );
      }
    }

    const allIds = state.stages.flatMap((s) => s.instance_ids);
    const seen = await api.waitFor('running', allIds, (pr) => out.progress(describeProgress('waiting for the instances to run', pr)), ctx.abortSignal);
    state.instances = instanceStates(seen, state.instances);
    state.status = 'running';
    save(ctx, state);
    return state;
  } catch (e) {
    if (api.dryRun || e instanceof Ec2PlanError) {
      if (!api.dryRun) {
        // Nothing was created before the plan check that failed; ec2.json says so.
        state.status = 'failed';
        state.reason = (e as Error).message;
        state.ended_at = new Date().toISOString();
        save(ctx, state);
      }
      throw e;
    }
    const cause = e instanceof Ec2Error ? e : new Ec2Error('launch', 'Error', (e as Error)?.message ?? String(e), `spawn-red down ${id} removes what was created`);
    state.status = 'failed';
    state.reason = cause.message;
    save(ctx, state);
    out.info(`spawn-red: launch failed (${cause.api}: ${cause.code}); removing what it created`);
    let result: TeardownResult | undefined;
    let rollbackError: Ec2Error | undefined;
    try {
      result = await teardown(api, id, state, out, ctx.env, state.launch_token, ctx.secrets);
    } catch (re) {
      rollbackError = re instanceof Ec2Error ? re : new Ec2Error('rollback', 'Error', String((re as Error)?.message ?? re), `run spawn-red down ${id}`);
    }
    state.status = 'failed';
    state.reason = cause.message;
    state.ended_at = new Date().toISOString();
    save(ctx, state);
    throw new LaunchFailed(cause, result, rollbackError);
  }
}

/**
 * The pipeline's CA (kept here) and a certificate per instance slot, written to SSM Parameter
 * Store before any instance starts. ec2.json gets the path first, so a rollback after a partial
 * write deletes what was written; it never holds a value.
 */
async function shipSecrets(ctx: LaunchContext, state: Ec2State, plans: StagePlan[], curveFile: string | undefined): Promise<void> {
  const id = state.pipeline_id;
  const kinds = secretKindsOf(ctx);
  const slots = plans.map((p) => ({ stageId: p.stage.stage_id, count: p.stage.instance_count }));
  const caDir = caDirOf(pipelineDir(id, ctx.env));
  // A dry run makes no CA and no key: it shows the calls with the values left out.
  let secrets: InstanceSecrets[] = !kinds.quic
    ? []
    : ctx.api.dryRun
      ? slots.flatMap((s) => Array.from({ length: s.count }, (_, index) => ({ stageId: s.stageId, index, files: { 'quic/ca.pem': '', 'quic/cert.pem': '', 'quic/key.pem': '' } })))
      : quicInstanceSecrets(caDir, id, slots);
  if (kinds.curve) secrets = addCurveSecrets(secrets, slots, curveFile ?? '');
  state.secrets_path = launchSecretsPath(id, state.launch_token);
  save(ctx, state);
  try {
    await ctx.secrets!.put(id, state.launch_token, secrets);
  } finally {
    // What was written, also when a write failed half-way: the rollback deletes these.
    state.secret_parameters = [...ctx.secrets!.written];
    save(ctx, state);
  }
  const n = `${secrets.length} instance${secrets.length === 1 ? '' : 's'}`;
  if (kinds.quic) ctx.out.info(`  QUIC certificates: ${n}, SecureString parameters under ${state.secrets_path}/ (the CA key stays in ${caDir})`);
  if (kinds.curve) ctx.out.info(`  CurveZMQ keys: ${n}, SecureString parameters under ${state.secrets_path}/ (the secret key is kept nowhere else)`);
}

/** Instances as last described, merged with what the launch knew (stage and index). */
export function instanceStates(seen: Instance[], known: Ec2InstanceState[]): Ec2InstanceState[] {
  const byId = new Map(seen.map((i) => [i.InstanceId, i]));
  const out: Ec2InstanceState[] = known.map((k) => {
    const i = byId.get(k.instance_id);
    return i ? { ...k, ...fromInstance(i, k.stage_id, k.index) } : k;
  });
  for (const i of seen) {
    if (out.some((k) => k.instance_id === i.InstanceId)) continue;
    const tags = Object.fromEntries((i.Tags ?? []).map((t) => [t.Key, t.Value]));
    out.push(fromInstance(i, tags[TAG.stageId] ?? '?', Number(tags[TAG.instanceIndex] ?? -1)));
  }
  return out;
}

function fromInstance(i: Instance, stageId: string, index: number): Ec2InstanceState {
  const s: Ec2InstanceState = { instance_id: i.InstanceId!, stage_id: stageId, index, state: i.State?.Name };
  if (i.PrivateIpAddress) s.private_ip = i.PrivateIpAddress;
  if (i.PublicIpAddress) s.public_ip = i.PublicIpAddress;
  if (i.Placement?.AvailabilityZone) s.availability_zone = i.Placement.AvailabilityZone;
  return s;
}

/** The pipeline's instances that spawn-red launched, in any state but terminated (all pages). */
export async function findInstances(api: Ec2Api, pipelineId: string, states = ['pending', 'running', 'stopping', 'stopped', 'shutting-down'], launchToken?: string): Promise<Instance[]> {
  const found: Instance[] = [];
  let NextToken: string | undefined;
  do {
    const out = await api.call('DescribeInstances', { Filters: [...tagFilters(pipelineId, launchToken), { Name: 'instance-state-name', Values: states }], MaxResults: 1000, NextToken });
    for (const r of out.Reservations ?? []) found.push(...(r.Instances ?? []));
    NextToken = out.NextToken;
  } while (NextToken);
  return found;
}

export interface TeardownResult {
  terminated: string[];
  placementGroups: string[];
  securityGroups: string[];
  /** SSM parameters deleted (the instances' secrets). */
  parameters?: string[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Remove everything of a pipeline that spawn-red created: terminate its instances (found by tag,
 * and those ec2.json knows of), wait until they are terminated, then delete its placement group and
 * security group. Idempotent: what is gone already is skipped. `onlyLaunch` (a rollback) keeps to
 * the resources of one launch; `down` takes every launch's.
 */
export async function teardown(
  api: Ec2Api,
  pipelineId: string,
  state: Ec2State | undefined,
  out: Output,
  env?: NodeJS.ProcessEnv,
  onlyLaunch?: string,
  secrets?: SecretStore,
): Promise<TeardownResult> {
  const result: TeardownResult = { terminated: [], placementGroups: [], securityGroups: [] };
  if (state && !api.dryRun) {
    state.status = state.status === 'failed' ? 'failed' : 'stopping';
    writeEc2State(state, env);
  }
  const found = await findInstances(api, pipelineId, undefined, onlyLaunch);
  const tagged = found.map((i) => i.InstanceId!).filter(Boolean);
  // Just launched instances may not show in a tag search yet (eventual consistency): add those ec2.json knows.
  const gone = new Set((state?.instances ?? []).filter((i) => i.state === 'terminated').map((i) => i.instance_id));
  const known = (state?.stages ?? []).flatMap((s) => s.instance_ids).filter((i) => !i.startsWith('<') && !gone.has(i));
  let ids = [...new Set([...tagged, ...known])];
  if (ids.length) {
    const terminate = (list: string[]) => api.call('TerminateInstances', { InstanceIds: list }, { what: `${list.length} instance${list.length === 1 ? '' : 's'}` });
    try {
      await terminate(ids);
    } catch (e) {
      // An id ec2.json knows that AWS does not (long gone): terminate what the tag search found.
      if (!(e instanceof Ec2Error && e.code === 'InvalidInstanceID.NotFound')) throw e;
      ids = tagged;
      if (ids.length) await terminate(ids);
    }
    await api.waitFor('terminated', ids, (p) => out.progress(describeProgress('waiting for the instances to terminate', p)));
    result.terminated = ids;
    if (ids.length) out.info(`  terminated ${ids.length} instance${ids.length === 1 ? '' : 's'}`);
  }

  // The groups: a failure with one does not keep the other from going; the first failure is thrown after.
  let failure: unknown;
  try {
    await deletePlacementGroups(api, pipelineId, state, out, result, onlyLaunch);
  } catch (e) {
    failure = e;
  }
  try {
    await deleteSecurityGroups(api, pipelineId, state, out, result, onlyLaunch);
  } catch (e) {
    failure ??= e;
  }
  if (secrets) {
    const prefix = onlyLaunch ? launchSecretsPath(pipelineId, onlyLaunch) : pipelineSecretsPath(pipelineId);
    try {
      result.parameters = await secrets.deleteUnder(prefix, state?.secret_parameters);
      if (result.parameters.length) out.info(`  deleted ${result.parameters.length} SSM parameter${result.parameters.length === 1 ? '' : 's'} under ${prefix}/`);
    } catch (e) {
      // Without ec2.json, or with nothing written, credentials without SSM access only get a note.
      if (!state?.secret_parameters?.length && e instanceof Ec2Error && /AccessDenied/.test(e.code)) out.info(`  note: could not list the SSM parameters under ${prefix}/ (${e.code}); none is known to be written; any that were need credentials that may delete them`);
      else failure ??= e;
    }
  }
  if (failure) {
    if (state && !api.dryRun) {
      state.reason = `spawn-red down failed: ${(failure as Error).message}`;
      writeEc2State(state, env);
    }
    throw failure;
  }
  if (state && !api.dryRun) {
    if (state.status !== 'failed') {
      state.status = 'down';
      state.reason ??= 'stopped by spawn-red down';
    }
    state.ended_at = new Date().toISOString();
    state.instances = state.instances.map((i) => ({ ...i, state: result.terminated.includes(i.instance_id) ? 'terminated' : i.state }));
    // Gone now: a second down has nothing to do.
    delete state.security_group_id;
    delete state.placement_group;
    if (result.parameters) delete state.secret_parameters;
    writeEc2State(state, env);
  }
  return result;
}

/**
 * The pipeline's cluster placement group: the one ec2.json names, and any found by tag. Without
 * ec2.json a tag search is needed; with it, a launch whose stages wanted no cluster group made none.
 */
async function deletePlacementGroups(api: Ec2Api, pipelineId: string, state: Ec2State | undefined, out: Output, result: TeardownResult, onlyLaunch?: string): Promise<void> {
  const groups = new Set<string>();
  if (state?.placement_group) groups.add(state.placement_group);
  const mayHaveOne = !state || state.placement_group !== undefined || state.stages.some((s) => s.placement_group === resourceName(pipelineId));
  if (mayHaveOne) {
    const pgs = await api.call('DescribePlacementGroups', { Filters: tagFilters(pipelineId, onlyLaunch) });
    for (const g of pgs.PlacementGroups ?? []) if (g.GroupName) groups.add(g.GroupName);
  }
  for (const name of groups) {
    const done = await api.call('DeletePlacementGroup', { GroupName: name }, { okOn: ['InvalidPlacementGroup.Unknown'] });
    if (done !== undefined) {
      result.placementGroups.push(name);
      out.info(`  deleted placement group ${name}`);
    }
  }
}

async function deleteSecurityGroups(api: Ec2Api, pipelineId: string, state: Ec2State | undefined, out: Output, result: TeardownResult, onlyLaunch?: string): Promise<void> {
  const sgs = new Set<string>();
  if (state?.security_group_id && !state.security_group_id.startsWith('<')) sgs.add(state.security_group_id);
  const described = await api.call('DescribeSecurityGroups', { Filters: tagFilters(pipelineId, onlyLaunch) });
  for (const g of described.SecurityGroups ?? []) if (g.GroupId) sgs.add(g.GroupId);
  for (const groupId of sgs) {
    // Terminated instances release their network interfaces a little later: DependencyViolation until then.
    const deadline = Date.now() + api.wait.maxWaitTime * 1000;
    for (;;) {
      try {
        const done = await api.call('DeleteSecurityGroup', { GroupId: groupId }, { okOn: ['InvalidGroup.NotFound'] });
        if (done !== undefined) {
          result.securityGroups.push(groupId);
          out.info(`  deleted security group ${groupId}`);
        }
        break;
      } catch (e) {
        if (!(e instanceof Ec2Error && e.code === 'DependencyViolation') || Date.now() > deadline) throw e;
        out.progress(`  security group ${groupId} is still in use by the instances' network interfaces; trying again`);
        await sleep(api.wait.minDelay * 1000);
      }
    }
  }
}

