import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/**
 * What the local provider keeps about a pipeline, in its state folder
 * (~/.spawn-red/pipelines/<pipeline_id>/, or $SPAWN_RED_HOME/pipelines/<pipeline_id>/):
 * state.json (this), supervisor.log, and one folder per instance with its peer file, log, flow,
 * Node-RED user directory and counters. Logs stay after `down`.
 */

export type InstanceStatus = 'pending' | 'running' | 'exited' | 'failed' | 'stopped' | 'timed-out';
export type PipelineStatus = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed' | 'completed';

export interface InstanceState {
  stage_id: string;
  stage_index: number;
  index: number;
  instance_id: string;
  address: string;
  /** The instance's network namespace (launch --netns). */
  netns?: string;
  dir: string;
  log: string;
  /** How it is started: an argv, or a shell command line (external program from a pipeline file). */
  argv?: string[];
  shell?: string;
  timeout_ms?: number;
  pid?: number;
  /** The process's start time from /proc, so a recycled pid is never mistaken for ours. */
  pid_start?: string;
  status: InstanceStatus;
  exit_code?: number | null;
  signal?: string | null;
  started_at?: string;
  ended_at?: string;
  /** The last lines of the log of an instance that failed. */
  last_lines?: string[];
}

export interface PipelineState {
  pipeline_id: string;
  provider: 'local';
  status: PipelineStatus;
  on_failure: 'stop' | 'continue';
  /** The file launched. */
  source: string;
  /**
   * Second octet of the pipeline's address block: instances are 127.<block>.<stage+1>.<index+1>,
   * or 10.<block>.<stage+1>.<index+1> in network namespaces of their own (`netns`).
   */
  block: number;
  netns?: boolean;
  launched_at: string;
  ended_at?: string;
  supervisor_pid?: number;
  supervisor_start?: string;
  /** Why the pipeline stopped or failed, for `status`. */
  reason?: string;
  instances: InstanceState[];
}

export function stateRoot(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.SPAWN_RED_HOME || path.join(os.homedir(), '.spawn-red'), 'pipelines');
}

export function pipelineDir(pipelineId: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(stateRoot(env), pipelineId);
}

export function stateFile(dir: string): string {
  return path.join(dir, 'state.json');
}

export function readState(dir: string): PipelineState | undefined {
  try {
    return JSON.parse(fs.readFileSync(stateFile(dir), 'utf8')) as PipelineState;
  } catch {
    return undefined;
  }
}

/** Replace state.json in one step (write then rename): readers never see half a file. */
export function writeState(dir: string, state: PipelineState): void {
  const tmp = `${stateFile(dir)}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(state, null, 2));
  fs.renameSync(tmp, stateFile(dir));
}

/** Every pipeline with a state folder. */
export function listStates(env: NodeJS.ProcessEnv = process.env): PipelineState[] {
  const root = stateRoot(env);
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root)
    .map((id) => readState(path.join(root, id)))
    .filter((s): s is PipelineState => s !== undefined)
    .sort((a, b) => a.launched_at.localeCompare(b.launched_at));
}

/** Field 22 of /proc/<pid>/stat: the process's start time in clock ticks since boot. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Whether the process that was `pid` (started at `start`) still runs; zombies count as gone. */
export function alive(pid: number | undefined, start: string | undefined): boolean {
  if (!pid) return false;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z') return false;
    return start === undefined || fields[19] === start;
  } catch {
    return false;
  }
}

/** The pipeline's processes that still run: its supervisor and its instances. */
export function liveProcesses(state: PipelineState): Array<{ pid: number; what: string }> {
  const out: Array<{ pid: number; what: string }> = [];
  if (alive(state.supervisor_pid, state.supervisor_start)) out.push({ pid: state.supervisor_pid!, what: 'supervisor' });
  for (const i of state.instances) if (alive(i.pid, i.pid_start)) out.push({ pid: i.pid!, what: `${i.stage_id}/${i.index}` });
  return out;
}

/** The last `n` lines of a log file. */
export function lastLines(file: string, n = 10): string[] {
  try {
    const size = fs.statSync(file).size;
    const fd = fs.openSync(file, 'r');
    const len = Math.min(size, 64 * 1024);
    const buf = Buffer.alloc(len);
    fs.readSync(fd, buf, 0, len, size - len);
    fs.closeSync(fd);
    return buf.toString('utf8').split('\n').filter((l) => l.trim().length > 0).slice(-n);
  } catch {
    return [];
  }
}

export interface InstanceCounters {
  sent: number;
  received: number;
  sentPerSecond: number;
  receivedPerSecond: number;
}

/** An instance's message counters, from the stats file its transport nodes write (if any). */
export function instanceCounters(inst: InstanceState): InstanceCounters | undefined {
  try {
    const s = JSON.parse(fs.readFileSync(path.join(inst.dir, 'stats.json'), 'utf8')) as {
      nodes: Record<string, { sentMessages: number; receivedMessages: number; sentPerSecond: number; receivedPerSecond: number }>;
    };
    const c: InstanceCounters = { sent: 0, received: 0, sentPerSecond: 0, receivedPerSecond: 0 };
    for (const n of Object.values(s.nodes)) {
      c.sent += n.sentMessages;
      c.received += n.receivedMessages;
      c.sentPerSecond += n.sentPerSecond;
      c.receivedPerSecond += n.receivedPerSecond;
    }
    return c;
  } catch {
    return undefined;
  }
}
