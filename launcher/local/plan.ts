import * as fs from 'fs';
import * as path from 'path';
import { PeerFile, PeerInfo, spawnEnv } from '../../native/peers';
import { topoOrder } from '../dag';
import { exportPipeline, SpawnPipeline, SpawnStage } from '../export';
import { parseGoDuration } from '../go-duration';
import { readSource } from '../pipeline-verbs';
import { PACKAGE_ROOT } from '../runtime';
import { formatProblem, validatePipeline } from '../validate';
import { netnsAddress, netnsName } from './netns';
import { makeKeys, writeKeyFile } from '../../native/curve';
import { InstanceState, PipelineState } from './state';
import { flowUsesQuic, issueInstanceCertificate, quicEnv } from './quic-certs';

/** The pipeline's CurveZMQ key pair, in its state dir (mode 0600). */
export const CURVE_KEY_FILE = 'curve-keys.json';

/**
 * A launch plan for the local provider: every instance of every stage, in dependency order, with
 * its own loopback address (127.<block>.<stage+1>.<index+1>, so instances of one stage share a port
 * number as on separate hosts), its own folder, peer-discovery file and command.
 */

export const CLI_PATH = path.join(PACKAGE_ROOT, 'bin', 'spawn-red.js');

/**
 * Node's memory settings for a Node-RED instance, as NODE_OPTIONS (so a stage's own NODE_OPTIONS,
 * set in its env, replaces them). V8's defaults (16 MB young-generation semi-spaces, an old
 * generation sized for a whole machine) let an idle-looking stage sit at 130–190 MB resident after
 * a burst; these keep it 20–40 MB lower at the same throughput (bench/launch.ts). Payload Buffers live
 * outside the V8 heap and do not count against the 128 MB.
 */
export const INSTANCE_NODE_OPTIONS = '--max-semi-space-size=4 --max-old-space-size=128';

export class PlanError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
  }
}

export interface LaunchInput {
  pipeline: SpawnPipeline;
  /** The Node-RED flow, when launching a flow (or a pipeline with --flow). */
  flow?: unknown[];
  source: string;
}

/** Read what `launch` was given: a flow (exported on the fly) or a spawn pipeline file. */
export function readLaunchInput(file: string, opts: { pipelineId?: string; flowFile?: string }): LaunchInput {
  const read = readSource(file);
  if (!read.source) throw new PlanError(read.problems.map(formatProblem));
  if (read.source.kind === 'flow') {
    const { pipeline, problems } = exportPipeline(read.source.flow, { fileName: file, pipelineId: opts.pipelineId });
    if (problems.length > 0) throw new PlanError(problems.map(formatProblem));
    return { pipeline, flow: read.source.flow, source: path.resolve(file) };
  }
  const problems = validatePipeline(read.source.pipeline);
  if (problems.length > 0) throw new PlanError(problems.map(formatProblem));
  const pipeline = read.source.pipeline as unknown as SpawnPipeline;
  if (opts.pipelineId) pipeline.pipeline_id = opts.pipelineId;
  let flow: unknown[] | undefined;
  if (opts.flowFile) {
    const f = readSource(opts.flowFile);
    if (f.source?.kind !== 'flow') throw new PlanError(f.problems.length ? f.problems.map(formatProblem) : [`--flow ${opts.flowFile}: not a Node-RED flow`]);
    flow = f.source.flow;
  }
  return { pipeline, flow, source: path.resolve(file) };
}

function dependents(pipeline: SpawnPipeline, stageId: string): string[] {
  return pipeline.stages.filter((s) => (s.depends_on ?? []).includes(stageId)).map((s) => s.stage_id);
}

export function stageTimeoutMs(stage: SpawnStage): number | undefined {
  if (!stage.timeout) return undefined;
  const d = parseGoDuration(stage.timeout);
  return d.ok && d.nanoseconds > 0n ? Number(d.nanoseconds / 1_000_000n) : undefined;
}

/**
 * The instances, their folders and peer files (written here), and the initial state.
 * `block` is the second octet of the loopback addresses.
 */
export function planLaunch(input: LaunchInput, dir: string, block: number, netns = false): PipelineState {
  const { pipeline } = input;
  const order = topoOrder(
    pipeline.stages.map((s) => s.stage_id),
    (id) => pipeline.stages.find((s) => s.stage_id === id)?.depends_on ?? [],
  ).order;
  const stageIndex = new Map(order.map((id, i) => [id, i]));
  const peers: Record<string, PeerInfo[]> = {};
  for (const stage of pipeline.stages) {
    const si = stageIndex.get(stage.stage_id)!;
    if (si > 253 || stage.instance_count > 254) {
      throw new PlanError([`stage "${stage.stage_id}": the local provider runs at most 254 stages of at most 254 instances`]);
    }
    peers[stage.stage_id] = Array.from({ length: stage.instance_count }, (_, index) => ({
      stage_id: stage.stage_id,
      stage_index: si,
      instance_id: `local-${pipeline.pipeline_id}-${stage.stage_id}-${index}`,
      private_ip: netns ? netnsAddress(block, si, index) : `127.${block}.${si + 1}.${index + 1}`,
      dns_name: `${stage.stage_id}-${index}.${pipeline.pipeline_id}.spore.host`,
      state: 'running',
      index,
      // For `auto` transport selection: one machine is one zone per region, so stages declared in
      // different regions talk QUIC, as they would on EC2, and the others TCP.
      availability_zone: `${stage.region || 'local'}-local`,
    }));
  }

  // `spawn-red` in a stage command (a pipeline file's) is this package's CLI.
  const binDir = path.join(dir, 'bin');
  fs.mkdirSync(binDir, { recursive: true });
  fs.writeFileSync(path.join(binDir, 'spawn-red'), `#!/bin/sh\nexec '${process.execPath}' '${CLI_PATH}' "$@"\n`, { mode: 0o755 });

  // CurveZMQ keys for this pipeline (nodes with encryption "curve" use them): the secret in a 0600
  // file of the pipeline's state dir, the public key in every peer file.
  const curve = makeKeys();
  writeKeyFile(path.join(dir, CURVE_KEY_FILE), curve);

  const instances: InstanceState[] = [];
  for (const id of order) {
    const stage = pipeline.stages.find((s) => s.stage_id === id)!;
    for (const self of peers[id]) {
      const instDir = path.join(dir, `${id}-${self.index}`);
      fs.mkdirSync(instDir, { recursive: true });
      const pick = (ids: string[]) => Object.fromEntries(ids.filter((s) => peers[s]).map((s) => [s, peers[s]]));
      const peerFile: PeerFile = {
        pipeline_id: pipeline.pipeline_id,
        stage_id: id,
        stage_index: self.stage_index,
        instance_index: self.index,
        stage_peers: peers[id],
        upstream_stages: pick(stage.depends_on ?? []),
        downstream_stages: pick(dependents(pipeline, id)),
        all_stages: peers,
        curve_public_key: curve.publicKey,
      };
      fs.writeFileSync(path.join(instDir, 'pipeline-peers.json'), JSON.stringify(peerFile, null, 2));
      const inst: InstanceState = {
        stage_id: id,
        stage_index: self.stage_index,
        index: self.index,
        instance_id: self.instance_id,
        address: self.private_ip,
        netns: netns ? netnsName(block, self.stage_index, self.index) : undefined,
        dir: instDir,
        log: path.join(instDir, 'instance.log'),
        timeout_ms: stageTimeoutMs(stage),
        status: 'pending',
      };
      const runsFlow = input.flow && /^spawn-red run\b/.test(stage.command);
      if (input.flow) fs.writeFileSync(path.join(instDir, 'flows.json'), JSON.stringify(input.flow));
      if (flowUsesQuic(input.flow)) issueInstanceCertificate(dir, pipeline.pipeline_id, instDir, self.dns_name);
      if (runsFlow) {
        // A Node-RED stage: run this package's CLI directly (no shell, no PATH lookup).
        inst.argv = [process.execPath, CLI_PATH, 'run', '--flow', 'flows.json', '--stage', id, '--user-dir', 'node-red'];
      } else {
        inst.shell = stage.command;
      }
      instances.push(inst);
    }
  }
  return {
    pipeline_id: pipeline.pipeline_id,
    provider: 'local',
    status: 'starting',
    on_failure: pipeline.on_failure === 'continue' ? 'continue' : 'stop',
    source: input.source,
    block,
    netns,
    launched_at: new Date().toISOString(),
    instances,
  };
}

/** The environment of one instance: spawn's variables, the stage's env, and where to report. */
export function instanceEnv(inst: InstanceState, stage: SpawnStage | undefined): NodeJS.ProcessEnv {
  const peerPath = path.join(inst.dir, 'pipeline-peers.json');
  const peerFile = JSON.parse(fs.readFileSync(peerPath, 'utf8')) as PeerFile;
  const nodeRed = inst.argv !== undefined;
  return {
    ...process.env,
    ...(nodeRed ? { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} ${INSTANCE_NODE_OPTIONS}`.trim() } : {}),
    ...spawnEnv(peerFile),
    ...(stage?.env ?? {}),
    SPAWN_PEERS_FILE: peerPath,
    ...(fs.existsSync(path.join(path.dirname(inst.dir), CURVE_KEY_FILE)) ? { SPAWN_CURVE_KEYS: path.join(path.dirname(inst.dir), CURVE_KEY_FILE) } : {}),
    SPAWN_BIND_ADDR: inst.address,
    ...quicEnv(inst.dir),
    SPAWN_STATS_FILE: path.join(inst.dir, 'stats.json'),
    PATH: `${path.join(path.dirname(inst.dir), 'bin')}${path.delimiter}${process.env.PATH ?? ''}`,
  };
}
