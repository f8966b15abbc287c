import * as fs from 'fs';
import * as path from 'path';
import type { Instance } from '@aws-sdk/client-ec2';
import { hostfile, PeerFile, PeerInfo, spawnEnv } from '../../native/peers';
import { shellQuote } from '../export';
import { Ec2Api, makeClient } from './api';
import { Ec2Error, errorCode } from './errors';
import { TAG } from './plan';

/**
 * The peer writer: runs on every instance from its user data, as spawn does before a stage
 * starts. It finds the pipeline's instances with DescribeInstances on the tag spawn:pipeline-id
 * (states pending and running; only this launch's instances, by the spawn-red:launch tag), waits
 * until every instance of every stage runs and carries its index, then writes
 * /etc/spawn/pipeline-peers.json, spawn's MPI hostfile and the stage's environment (spawn's
 * variables and the stage's env, for the service). Credentials: the instance profile.
 *
 *   node dist/launcher/ec2/peer-writer.js --pipeline /etc/spawn/pipeline.json --stage S --launch TOKEN
 *     --region R [--timeout 1800] [--out FILE] [--hostfile FILE] [--env-out FILE] [--instance-id ID]
 *     [--secrets ssm:/spawn-red/<pipeline>/<launch>/<stage>]
 */

export interface PipelineShape {
  pipeline_id: string;
  stages: Array<{ stage_id: string; instance_count: number; depends_on?: string[]; env?: Record<string, string> }>;
}

const tagsOf = (i: Instance): Record<string, string> => Object.fromEntries((i.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));

/** The pipeline's instances by stage, as spawn's PeerInfo, sorted by index; terminated and stopped ones left out. */
export function peersFromInstances(instances: Instance[], pipelineId: string, launchToken?: string): Record<string, PeerInfo[]> {
  const byStage: Record<string, PeerInfo[]> = {};
  for (const i of instances) {
    const tags = tagsOf(i);
    if (tags[TAG.pipelineId] !== pipelineId) continue;
    if (launchToken && tags[TAG.launch] !== launchToken) continue;
    const state = i.State?.Name ?? 'unknown';
    if (state !== 'pending' && state !== 'running') continue;
    const stageId = tags[TAG.stageId];
    if (!stageId || !i.InstanceId) continue;
    const rawIndex = tags[TAG.instanceIndex];
    const peer: PeerInfo = {
      stage_id: stageId,
      stage_index: Number(tags[TAG.stageIndex] ?? 0),
      instance_id: i.InstanceId,
      private_ip: i.PrivateIpAddress ?? '',
      dns_name: tags[TAG.dnsName] ?? '',
      state,
      // An instance whose index tag is not there yet sorts last, as -1 (not ready).
      index: rawIndex === undefined || rawIndex === '' ? -1 : Number(rawIndex),
    };
    if (i.PublicIpAddress) peer.public_ip = i.PublicIpAddress;
    if (i.Placement?.AvailabilityZone) peer.availability_zone = i.Placement.AvailabilityZone;
    if (i.Placement?.GroupName) peer.placement_group = i.Placement.GroupName;
    // For `auto` transport selection (RDMA needs EFA on both sides).
    if (i.NetworkInterfaces?.some((n) => n.InterfaceType === 'efa')) peer.efa_enabled = true;
    (byStage[stageId] ??= []).push(peer);
  }
  for (const list of Object.values(byStage)) list.sort((a, b) => (a.index < 0 ? 1e9 : a.index) - (b.index < 0 ? 1e9 : b.index) || a.instance_id.localeCompare(b.instance_id));
  return byStage;
}

/** What keeps the peer file from being complete: one line per stage that is not all there, running, indexed and addressed. */
export function missingPeers(pipeline: PipelineShape, peers: Record<string, PeerInfo[]>): string[] {
  const out: string[] = [];
  for (const s of pipeline.stages) {
    const list = peers[s.stage_id] ?? [];
    const ready = list.filter((p) => p.state === 'running' && p.index >= 0 && p.private_ip);
    if (ready.length < s.instance_count) out.push(`stage ${s.stage_id}: ${ready.length} of ${s.instance_count} running`);
    else if (list.length > s.instance_count) out.push(`stage ${s.stage_id}: ${list.length} instances for ${s.instance_count}`);
  }
  return out;
}

/** spawn's peer file for one instance (the stage's own peers, its upstream and downstream stages, all of them). */
export function buildPeerFile(pipeline: PipelineShape, peers: Record<string, PeerInfo[]>, self: { stageId: string; index: number }): PeerFile {
  const stage = pipeline.stages.find((s) => s.stage_id === self.stageId);
  if (!stage) throw new Error(`stage ${self.stageId} is not in pipeline ${pipeline.pipeline_id}`);
  const pick = (ids: string[]) => Object.fromEntries(ids.filter((id) => peers[id]).map((id) => [id, peers[id]]));
  const downstream = pipeline.stages.filter((s) => (s.depends_on ?? []).includes(self.stageId)).map((s) => s.stage_id);
  const own = peers[self.stageId] ?? [];
  return {
    pipeline_id: pipeline.pipeline_id,
    stage_id: self.stageId,
    stage_index: own[0]?.stage_index ?? 0,
    instance_index: self.index,
    stage_peers: own,
    upstream_stages: pick(stage.depends_on ?? []),
    downstream_stages: pick(downstream),
    all_stages: pick(pipeline.stages.map((s) => s.stage_id)),
  };
}

/** The stage's environment for bash (`set -a; . file`): spawn's variables, the peer file's path, then the stage's env. */
export function envFileText(file: PeerFile, peerFilePath: string, stageEnv: Record<string, string> = {}, extra: Record<string, string> = {}): string {
  const env: Record<string, string> = { ...spawnEnv(file), SPAWN_PEERS_FILE: peerFilePath, ...extra, ...stageEnv };
  return Object.entries(env)
    .filter(([k]) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
    .map(([k, v]) => `${k}=${shellQuote(String(v))}\n`)
    .join('');
}

/** Write a file in one step (a reader never sees half of it). */
function writeAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o644 });
  fs.renameSync(tmp, file);
}

export interface WriterOptions {
  pipeline: PipelineShape;
  stageId: string;
  launchToken?: string;
  out: string;
  hostfile?: string;
  envFile?: string;
  timeoutMs: number;
  pollMs: number;
  /**
   * The stage's secrets path (`ssm:/spawn-red/<pipeline>/<launch>/<stage>`): the env file gets
   * SPAWN_SECRETS with this instance's index appended, and AWS_REGION, for `spawn-red run`.
   */
  secrets?: string;
  region?: string;
  /** The pipeline's CurveZMQ public key: the peer file's curve_public_key, as the local launcher writes it. */
  curvePublicKey?: string;
}

export interface WriterDeps {
  /** This launch's instances (DescribeInstances on the pipeline tag). */
  describe(): Promise<Instance[]>;
  instanceId(): Promise<string>;
  /** Self, for a one-instance pipeline without DescribeInstances permission. */
  selfFromMetadata?(): Promise<Instance>;
  sleep(ms: number): Promise<void>;
  log(line: string): void;
  now(): number;
}

/** Wait for the peers, then write the files. Resolves with the peer file written. */
export async function writePeerFiles(o: WriterOptions, deps: WriterDeps): Promise<PeerFile> {
  const selfId = await deps.instanceId();
  const deadline = deps.now() + o.timeoutMs;
  const total = o.pipeline.stages.reduce((n, s) => n + s.instance_count, 0);
  let lastReport = '';
  for (;;) {
    let instances: Instance[];
    try {
      instances = await deps.describe();
    } catch (e) {
      // A one-instance pipeline needs no peers: without DescribeInstances permission, describe itself from the metadata.
      if (total === 1 && deps.selfFromMetadata && /Credentials|Unauthorized|AccessDenied/.test(errorCode(e) + String((e as Error).message))) {
        const self = await deps.selfFromMetadata();
        instances = [self];
      } else throw e;
    }
    const peers = peersFromInstances(instances, o.pipeline.pipeline_id, o.launchToken);
    const missing = missingPeers(o.pipeline, peers);
    const self = Object.values(peers).flat().find((p) => p.instance_id === selfId);
    if (missing.length === 0 && self) {
      if (self.stage_id !== o.stageId) throw new Error(`this instance (${selfId}) is tagged stage ${self.stage_id}, its user data says ${o.stageId}`);
      const file = buildPeerFile(o.pipeline, peers, { stageId: self.stage_id, index: self.index });
      if (o.curvePublicKey) file.curve_public_key = o.curvePublicKey;
      writeAtomic(o.out, `${JSON.stringify(file, null, 2)}\n`);
      if (o.hostfile) writeAtomic(o.hostfile, hostfile(file));
      const extra: Record<string, string> = o.secrets ? { SPAWN_SECRETS: `${o.secrets}/${self.index}`, ...(o.region ? { AWS_REGION: o.region } : {}) } : {};
      if (o.envFile) writeAtomic(o.envFile, envFileText(file, o.out, o.pipeline.stages.find((s) => s.stage_id === self.stage_id)?.env, extra));
      deps.log(`wrote ${o.out}: ${self.stage_id} instance ${self.index}, ${Object.values(file.all_stages).flat().length} instances in ${Object.keys(file.all_stages).length} stages`);
      return file;
    }
    const report = missing.length ? missing.join('; ') : `this instance ${selfId} is not among them yet`;
    if (deps.now() >= deadline) throw new Error(`gave up waiting for the pipeline's instances after ${Math.round(o.timeoutMs / 1000)} s: ${report}`);
    if (report !== lastReport) deps.log(`waiting: ${report}`);
    lastReport = report;
    await deps.sleep(o.pollMs);
  }
}

/** The instance metadata service; AWS_EC2_METADATA_SERVICE_ENDPOINT (the SDK's own variable) moves it. */
const imdsBase = () => `${(process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT || 'http://169.254.169.254').replace(/\/+$/, '')}/latest`;

/** Instance metadata with IMDSv2 (a session token first: the launcher requires it). */
export async function imds(item: string): Promise<string> {
  const IMDS = imdsBase();
  const tokenRes = await fetch(`${IMDS}/api/token`, { method: 'PUT', headers: { 'X-aws-ec2-metadata-token-ttl-seconds': '300' } });
  if (!tokenRes.ok) throw new Error(`instance metadata token: HTTP ${tokenRes.status}`);
  const token = await tokenRes.text();
  const res = await fetch(`${IMDS}/meta-data/${item}`, { headers: { 'X-aws-ec2-metadata-token': token } });
  if (!res.ok) throw new Error(`instance metadata ${item}: HTTP ${res.status}`);
  return res.text();
}

function parseArgs(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
    else {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      out[a.slice(2)] = argv[++i];
    }
  }
  return out;
}

export async function main(argv: string[]): Promise<number> {
  const log = (line: string) => console.log(`spawn-red peer writer: ${line}`);
  try {
    const args = parseArgs(argv);
    for (const required of ['pipeline', 'stage', 'region']) if (!args[required]) throw new Error(`--${required} is required`);
    const pipeline = JSON.parse(fs.readFileSync(args.pipeline, 'utf8')) as PipelineShape;
    const api = new Ec2Api({ client: makeClient(args.region), pipelineId: pipeline.pipeline_id });
    const describe = async (): Promise<Instance[]> => {
      const instances: Instance[] = [];
      let NextToken: string | undefined;
      do {
        const out = await api.call('DescribeInstances', {
          Filters: [
            { Name: `tag:${TAG.pipelineId}`, Values: [pipeline.pipeline_id] },
            { Name: 'instance-state-name', Values: ['pending', 'running'] },
          ],
          MaxResults: 1000,
          NextToken,
        });
        for (const r of out.Reservations ?? []) instances.push(...(r.Instances ?? []));
        NextToken = out.NextToken;
      } while (NextToken);
      return instances;
    };
    await writePeerFiles(
      {
        pipeline,
        stageId: args.stage,
        launchToken: args.launch,
        out: args.out ?? '/etc/spawn/pipeline-peers.json',
        hostfile: args.hostfile,
        envFile: args['env-out'],
        timeoutMs: Number(args.timeout ?? 1800) * 1000,
        pollMs: Number(args.poll ?? 5) * 1000,
        secrets: args.secrets,
        region: args.region,
        curvePublicKey: args['curve-public-key'],
      },
      {
        describe,
        instanceId: async () => args['instance-id'] ?? (await imds('instance-id')),
        selfFromMetadata: async () => ({
          InstanceId: args['instance-id'] ?? (await imds('instance-id')),
          PrivateIpAddress: await imds('local-ipv4'),
          Placement: { AvailabilityZone: await imds('placement/availability-zone') },
          State: { Name: 'running' },
          Tags: [
            { Key: TAG.pipelineId, Value: pipeline.pipeline_id },
            { Key: TAG.stageId, Value: args.stage },
            { Key: TAG.stageIndex, Value: '0' },
            { Key: TAG.instanceIndex, Value: '0' },
            ...(args.launch ? [{ Key: TAG.launch, Value: args.launch }] : []),
          ],
        }),
        sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
        log,
        now: () => Date.now(),
      },
    );
    return 0;
  } catch (e) {
    console.error(`spawn-red peer writer: ${e instanceof Ec2Error || e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
