import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { SpawnPipeline } from '../export';
import { inNetns } from './netns';
import { instanceEnv } from './plan';
import { InstanceState, lastLines, PipelineStatus, processStart, readState, writeState } from './state';

/**
 * The supervisor of a locally launched pipeline: a detached process (so `launch --detached` can
 * return and a closed terminal does not stop the pipeline) that starts every instance, records
 * what happens to each in state.json, applies on_failure and stage timeouts, and on SIGTERM
 * (`spawn-red down`) stops the instances, each within a grace period, before it exits.
 *
 *   node dist/launcher/local/supervisor.js <pipeline state folder>
 */

const GRACE_MS = 20_000;

export function supervise(dir: string): void {
  const state = readState(dir);
  if (!state) throw new Error(`no state.json in ${dir}`);
  const pipeline = JSON.parse(fs.readFileSync(path.join(dir, 'pipeline.json'), 'utf8')) as SpawnPipeline;
  const children = new Map<InstanceState, ChildProcess>();
  const timers: NodeJS.Timeout[] = [];
  let stopping = false;
  let finalStatus: PipelineStatus = 'stopped';
  const save = () => writeState(dir, state);

  state.supervisor_pid = process.pid;
  state.supervisor_start = processStart(process.pid);
  save();

  const ended = (i: InstanceState) => i.status !== 'pending' && i.status !== 'running';

  function finishIfDone(): void {
    if (!state!.instances.every(ended)) return;
    for (const t of timers) clearTimeout(t);
    if (stopping) state!.status = finalStatus;
    else state!.status = state!.instances.some((i) => i.status === 'failed' || i.status === 'timed-out') ? 'failed' : 'completed';
    state!.ended_at = new Date().toISOString();
    save();
    process.exit(0);
  }

  function kill(inst: InstanceState, signal: NodeJS.Signals): void {
    const child = children.get(inst);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid!, signal); // the instance's whole process group (a shell and its program)
    } catch {
      child.kill(signal);
    }
  }

  function stopAll(reason: string, status: PipelineStatus): void {
    if (stopping) return;
    stopping = true;
    finalStatus = status;
    state!.status = 'stopping';
    state!.reason = reason;
    for (const inst of state!.instances) {
      if (inst.status === 'pending') inst.status = 'stopped';
      kill(inst, 'SIGTERM');
    }
    save();
    setTimeout(() => state!.instances.forEach((i) => kill(i, 'SIGKILL')), GRACE_MS).unref();
    finishIfDone();
  }

  function onExit(inst: InstanceState, code: number | null, signal: NodeJS.Signals | null): void {
    inst.exit_code = code;
    inst.signal = signal;
    inst.ended_at = new Date().toISOString();
    if (inst.status === 'timed-out') {
      // set by the timeout below; already counted as a failure
    } else if (stopping) inst.status = 'stopped';
    else if (code === 0) inst.status = 'exited';
    else inst.status = 'failed';
    if (inst.status === 'failed' || inst.status === 'timed-out') {
      inst.last_lines = lastLines(inst.log, 10);
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const what = inst.status === 'timed-out' ? `timed out (stage timeout) and ${how}` : how;
      if (state!.on_failure === 'stop') stopAll(`instance ${inst.stage_id}/${inst.index} ${what}; on_failure is stop`, 'failed');
      else state!.reason = `instance ${inst.stage_id}/${inst.index} ${what}; on_failure is continue`;
    }
    save();
    finishIfDone();
  }

  function start(inst: InstanceState): boolean {
    const stage = pipeline.stages.find((s) => s.stage_id === inst.stage_id);
    const log = fs.openSync(inst.log, 'a');
    fs.writeSync(log, `=== spawn-red: ${inst.stage_id}/${inst.index} on ${inst.address}, started ${new Date().toISOString()}\n`);
    const [file, ...args] = inNetns(inst, inst.argv ?? ['/bin/sh', '-c', inst.shell ?? 'false']);
    let child: ChildProcess;
    try {
      child = spawn(file, args, { cwd: inst.dir, env: instanceEnv(inst, stage), detached: true, stdio: ['ignore', log, log] });
    } catch (e) {
      fs.closeSync(log);
      inst.status = 'failed';
      inst.last_lines = [`cannot start: ${(e as Error).message}`];
      return false;
    }
    fs.closeSync(log);
    children.set(inst, child);
    inst.pid = child.pid;
    inst.pid_start = child.pid ? processStart(child.pid) : undefined;
    inst.status = 'running';
    inst.started_at = new Date().toISOString();
    child.on('exit', (code, signal) => onExit(inst, code, signal));
    child.on('error', (e) => {
      if (inst.status === 'running' && !inst.pid) {
        inst.status = 'failed';
        inst.last_lines = [`cannot start: ${e.message}`];
        save();
      }
    });
    if (inst.timeout_ms) {
      timers.push(
        setTimeout(() => {
          if (inst.status !== 'running') return;
          inst.status = 'timed-out';
          kill(inst, 'SIGTERM');
          setTimeout(() => kill(inst, 'SIGKILL'), GRACE_MS).unref();
        }, inst.timeout_ms),
      );
    }
    return true;
  }

  process.on('SIGTERM', () => stopAll('stopped on request (spawn-red down, or Ctrl-C at launch)', 'stopped'));
  process.on('SIGINT', () => stopAll('stopped on request (spawn-red down, or Ctrl-C at launch)', 'stopped'));

  // Dependencies first; ZeroMQ connects whenever a peer appears, so nothing waits for readiness.
  for (const inst of state.instances) {
    if (stopping) break;
    if (!start(inst)) {
      stopAll(`instance ${inst.stage_id}/${inst.index} could not start: ${inst.last_lines?.[0] ?? ''}`, 'failed');
      break;
    }
  }
  if (!stopping) state.status = 'running';
  save();
}

if (require.main === module) {
  try {
    supervise(path.resolve(process.argv[2] ?? '.'));
  } catch (e) {
    console.error(`spawn-red supervisor: ${(e as Error).message}`);
    process.exit(1);
  }
}
