import * as fs from 'fs';
import * as path from 'path';
import { pipelineDir, stateRoot } from '../local/state';

/**
 * What the ec2 provider keeps about a pipeline: ec2.json in the pipeline's state folder
 * (~/.spawn-red/pipelines/<pipeline_id>/, $SPAWN_RED_HOME overriding ~/.spawn-red), beside where
 * the local provider keeps state.json, so `spawn-red list` shows both. It is written before the
 * first API call and after each step, so `down` knows what a launch that was killed had created;
 * `down` also finds everything by tag, so a lost ec2.json loses nothing.
 */

export type Ec2PipelineStatus = 'launching' | 'running' | 'failed' | 'stopping' | 'down';

export interface Ec2InstanceState {
  instance_id: string;
  stage_id: string;
  index: number;
  state?: string;
  private_ip?: string;
  public_ip?: string;
  availability_zone?: string;
}

export interface Ec2StageState {
  stage_id: string;
  stage_index: number;
  instance_type: string;
  instance_count: number;
  ami?: string;
  spot: boolean;
  efa: boolean;
  placement_group?: string;
  instance_ids: string[];
}

export interface Ec2State {
  pipeline_id: string;
  provider: 'ec2';
  status: Ec2PipelineStatus;
  /** The value of every resource's `spawn-red:launch` tag: tells this launch's resources from an earlier one's. */
  launch_token: string;
  region: string;
  /** AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL at launch (an emulator), if set. */
  endpoint?: string;
  source: string;
  package: string;
  launched_at: string;
  ended_at?: string;
  /** Why the launch failed or what stopped the pipeline. */
  reason?: string;
  vpc_id?: string;
  subnet_id?: string;
  availability_zone?: string;
  security_group_id?: string;
  /** The cluster placement group this launch created (named groups given by a stage are not ours). */
  placement_group?: string;
  /** The SSM Parameter Store path of this launch's instance secrets (secrets.ts); names only, never values. */
  secrets_path?: string;
  /** The parameters written under it (gone after down). */
  secret_parameters?: string[];
  stages: Ec2StageState[];
  /** As last seen (launch, status). */
  instances: Ec2InstanceState[];
}

export const EC2_STATE_FILE = 'ec2.json';

export function ec2StatePath(pipelineId: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(pipelineDir(pipelineId, env), EC2_STATE_FILE);
}

export function readEc2State(pipelineId: string, env: NodeJS.ProcessEnv = process.env): Ec2State | undefined {
  try {
    const s = JSON.parse(fs.readFileSync(ec2StatePath(pipelineId, env), 'utf8')) as Ec2State;
    return s && s.provider === 'ec2' ? s : undefined;
  } catch {
    return undefined;
  }
}

/** Replace ec2.json in one step (write, then rename). */
export function writeEc2State(state: Ec2State, env: NodeJS.ProcessEnv = process.env): void {
  const file = ec2StatePath(state.pipeline_id, env);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(state, null, 2));
  fs.renameSync(tmp, file);
}

/** Every ec2 pipeline with a state file, oldest first. */
export function listEc2States(env: NodeJS.ProcessEnv = process.env): Ec2State[] {
  const root = stateRoot(env);
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root)
    .map((id) => readEc2State(id, env))
    .filter((s): s is Ec2State => s !== undefined)
    .sort((a, b) => a.launched_at.localeCompare(b.launched_at));
}
