import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { ParsedArgs } from '../cli';
import { pipelineJson } from '../export';
import { checkNetnsAllowed, NetnsError, setUpNetns, tearDownNetns } from './netns';
import { planLaunch, PlanError, readLaunchInput } from './plan';
import {
  alive,
  InstanceState,
  instanceCounters,
  listStates,
  liveProcesses,
  pipelineDir,
  PipelineState,
  readState,
  writeState,
} from './state';

/**
 * The local provider's verbs: launch, status, logs, list, down. Every pipeline instance is a
 * process on this machine under a detached supervisor (supervisor.ts); these verbs read and act
 * on the pipeline's state folder, so they work from any shell, and after the launcher is gone.
 */

const SUPERVISOR = path.join(__dirname, 'supervisor.js');
const ENDED = new Set(['stopped', 'failed', 'completed']);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The state, with a pipeline whose supervisor died (killed launcher, reboot) shown as stale. */
function effectiveStatus(state: PipelineState): string {
  if (ENDED.has(state.status)) return state.status;
  return alive(state.supervisor_pid, state.supervisor_start) ? state.status : 'stale';
}

/** A free loopback block for the pipeline: stable for an id, and not used by a live pipeline. */
function chooseBlock(pipelineId: string): number {
  const used = new Set(listStates().filter((s) => liveProcesses(s).length > 0).map((s) => s.block));
  let h = 0;
  for (const c of pipelineId) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  for (let k = 0; k < 200; k++) {
    const block = 20 + ((h + k) % 200);
    if (!used.has(block)) return block;
  }
  throw new PlanError(['no free loopback block: 200 pipelines are running']);
}

function fmtRate(n: number | undefined): string {
  return n === undefined ? '-' : n >= 10_000 ? `${Math.round(n / 1000)}k` : String(n);
}

export function statusTable(state: PipelineState): string {
  const rows = [['STAGE', 'INSTANCE', 'ADDRESS', 'PID', 'STATE', 'IN/s', 'OUT/s', 'RECEIVED', 'SENT']];
  for (const i of state.instances) {
    const c = instanceCounters(i);
    const st = i.status === 'running' && !alive(i.pid, i.pid_start) ? 'gone' : i.status;
    const code = i.signal ? ` (${i.signal})` : i.exit_code !== undefined && i.exit_code !== null && i.status !== 'running' ? ` (exit ${i.exit_code})` : '';
    rows.push([i.stage_id, String(i.index), i.address, String(i.pid ?? '-'), st + code, fmtRate(c?.receivedPerSecond), fmtRate(c?.sentPerSecond), String(c?.received ?? '-'), String(c?.sent ?? '-')]);
  }
  const widths = rows[0].map((_, k) => Math.max(...rows.map((r) => r[k].length)));
  const lines = rows.map((r) => r.map((cell, k) => cell.padEnd(widths[k])).join('  ').trimEnd());
  const head = `pipeline ${state.pipeline_id}: ${effectiveStatus(state)}${state.reason ? ` (${state.reason})` : ''}`;
  const failures = state.instances
    .filter((i) => i.last_lines?.length)
    .map((i) => `\n${i.stage_id}/${i.index} last log lines (${i.log}):\n${i.last_lines!.map((l) => `  ${l}`).join('\n')}`);
  return [head, ...lines].join('\n') + failures.join('');
}

export function statusJson(state: PipelineState): object {
  return {
    pipeline_id: state.pipeline_id,
    provider: state.provider,
    status: effectiveStatus(state),
    reason: state.reason,
    on_failure: state.on_failure,
    launched_at: state.launched_at,
    ended_at: state.ended_at,
    supervisor: { pid: state.supervisor_pid, alive: alive(state.supervisor_pid, state.supervisor_start) },
    instances: state.instances.map((i) => {
      const c = instanceCounters(i);
      return {
        stage_id: i.stage_id,
        index: i.index,
        instance_id: i.instance_id,
        address: i.address,
        pid: i.pid,
        alive: alive(i.pid, i.pid_start),
        status: i.status,
        exit_code: i.exit_code,
        signal: i.signal,
        started_at: i.started_at,
        ended_at: i.ended_at,
        log: i.log,
        messages: c ? { received: c.received, sent: c.sent, received_per_second: c.receivedPerSecond, sent_per_second: c.sentPerSecond } : undefined,
        last_lines: i.last_lines,
      };
    }),
  };
}

function loadOrFail(id: string | undefined, verb: string): PipelineState | number {
  if (!id) {
    console.error(`spawn-red ${verb}: name the pipeline id (spawn-red list shows them)`);
    return 2;
  }
  const state = readState(pipelineDir(id));
  if (!state) {
    console.error(`spawn-red ${verb}: no pipeline "${id}" (spawn-red list shows them)`);
    return 1;
  }
  return state;
}

/** Stop a pipeline: its supervisor first (it stops the instances), then anything left. */
export async function stopPipeline(id: string, log: (s: string) => void = console.log): Promise<PipelineState | undefined> {
  const dir = pipelineDir(id);
  let state = readState(dir);
  if (!state) return undefined;
  if (alive(state.supervisor_pid, state.supervisor_start)) {
    process.kill(state.supervisor_pid!, 'SIGTERM');
    for (let t = 0; t < 300 && alive(state.supervisor_pid, state.supervisor_start); t++) await sleep(100);
    state = readState(dir)!;
  }
  // A supervisor that was killed leaves instances behind: stop them here (stale state).
  const left = state.instances.filter((i) => alive(i.pid, i.pid_start));
  if (left.length > 0) {
    log(`stopping ${left.length} instance${left.length > 1 ? 's' : ''} left by a supervisor that is gone`);
    for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
      for (const i of left) {
        try {
          process.kill(-i.pid!, sig);
        } catch {
          try {
            process.kill(i.pid!, sig);
          } catch {
            /* already gone */
          }
        }
      }
      for (let t = 0; t < 100 && left.some((i) => alive(i.pid, i.pid_start)); t++) await sleep(100);
      if (!left.some((i) => alive(i.pid, i.pid_start))) break;
    }
  }
  if (state.netns) tearDownNetns(state);
  if (!ENDED.has(state.status) || left.length > 0) {
    for (const i of state.instances) if (i.status === 'running' || i.status === 'pending') i.status = 'stopped';
    state.status = 'stopped';
    state.reason ??= 'stopped by spawn-red down';
    state.ended_at ??= new Date().toISOString();
    writeState(dir, state);
  }
  return state;
}

export async function launchCommand(args: ParsedArgs): Promise<number> {
  const file = args.positional[0];
  if (!file) {
    console.error('spawn-red launch: name a flow or pipeline file');
    return 2;
  }
  const provider = (args.flags.provider as string | undefined) ?? 'local';
  if (provider !== 'local') {
    console.error(`spawn-red launch: provider "${provider}" is not available yet (local is)`);
    return 1;
  }
  let input;
  try {
    input = readLaunchInput(file, { pipelineId: args.flags['pipeline-id'] as string | undefined, flowFile: args.flags.flow as string | undefined });
  } catch (e) {
    if (e instanceof PlanError) {
      for (const p of e.problems) console.error(p);
      return 1;
    }
    throw e;
  }
  const onFailure = args.flags['on-failure'];
  if (onFailure !== undefined) {
    if (onFailure !== 'stop' && onFailure !== 'continue') {
      console.error(`spawn-red launch: --on-failure must be stop or continue, not "${String(onFailure)}"`);
      return 2;
    }
    input.pipeline.on_failure = onFailure;
  }
  const id = input.pipeline.pipeline_id;
  const dir = pipelineDir(id);
  const previous = readState(dir);
  if (previous) {
    const live = liveProcesses(previous);
    if (live.length > 0) {
      console.error(`spawn-red launch: pipeline "${id}" is already running (${live.map((p) => `${p.what} pid ${p.pid}`).join(', ')}); stop it with: spawn-red down ${id}`);
      return 1;
    }
  }
  fs.mkdirSync(dir, { recursive: true });
  const netns = args.flags.netns === true;
  let state: PipelineState;
  try {
    if (netns) checkNetnsAllowed();
    state = planLaunch(input, dir, chooseBlock(id), netns);
    if (netns) {
      if (previous?.netns) tearDownNetns(previous); // left by a run that ended without down
      setUpNetns(state);
    }
  } catch (e) {
    if (e instanceof NetnsError) {
      console.error(`spawn-red launch: ${e.message}`);
      return 1;
    }
    if (e instanceof PlanError) {
      for (const p of e.problems) console.error(p);
      return 1;
    }
    throw e;
  }
  fs.writeFileSync(path.join(dir, 'pipeline.json'), pipelineJson(input.pipeline));
  writeState(dir, state);

  const out = fs.openSync(path.join(dir, 'supervisor.log'), 'a');
  const sup = spawn(process.execPath, [SUPERVISOR, dir], { detached: true, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  sup.unref();
  console.log(`spawn-red: launching ${id}: ${state.instances.length} instance${state.instances.length > 1 ? 's' : ''} of ${input.pipeline.stages.length} stages (state in ${dir})`);

  // Progress while the instances start.
  let shown = -1;
  for (;;) {
    const s = readState(dir);
    if (s && s.status !== 'starting') {
      state = s;
      break;
    }
    if (!alive(sup.pid, undefined) && !readState(dir)?.supervisor_pid) {
      console.error(`spawn-red launch: the supervisor exited at once; see ${path.join(dir, 'supervisor.log')}`);
      return 1;
    }
    const started = s ? s.instances.filter((i) => i.status !== 'pending').length : 0;
    if (started !== shown) {
      console.log(`  started ${started}/${state.instances.length}`);
      shown = started;
    }
    await sleep(50);
  }
  if (args.flags.detached) {
    console.log(statusTable(state));
    console.log(`\nspawn-red status ${id} | spawn-red logs ${id} | spawn-red down ${id}`);
    return state.status === 'failed' ? 1 : 0;
  }
  return watch(id, true);
}

/** Redraw the status table every second until the pipeline ends; with `ownsIt`, Ctrl-C stops it. */
async function watch(id: string, ownsIt: boolean): Promise<number> {
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    console.log(ownsIt ? `\nstopping ${id} ...` : '');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const tty = process.stdout.isTTY;
  let lastText = '';
  try {
    for (;;) {
      if (interrupted) {
        if (!ownsIt) return 0;
        const s = await stopPipeline(id);
        if (s) console.log(statusTable(s));
        return 0;
      }
      const state = readState(pipelineDir(id));
      if (!state) return 1;
      const text = statusTable(state);
      if (text !== lastText) {
        if (tty && lastText) process.stdout.write(`\x1b[${lastText.split('\n').length}A\x1b[J`);
        console.log(text);
        lastText = text;
      }
      if (ENDED.has(state.status)) return state.status === 'failed' ? 1 : 0;
      if (effectiveStatus(state) === 'stale') {
        console.error(`the supervisor of ${id} is gone; spawn-red down ${id} cleans up`);
        return 1;
      }
      await sleep(1000);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export async function statusCommand(args: ParsedArgs): Promise<number> {
  const state = loadOrFail(args.positional[0], 'status');
  if (typeof state === 'number') return state;
  if (args.flags.watch) return watch(state.pipeline_id, false);
  console.log(args.flags.json ? JSON.stringify(statusJson(state), null, 2) : statusTable(state));
  return 0;
}

export async function downCommand(args: ParsedArgs): Promise<number> {
  const state = loadOrFail(args.positional[0], 'down');
  if (typeof state === 'number') return state;
  if (liveProcesses(state).length === 0 && ENDED.has(state.status)) {
    if (state.netns) tearDownNetns(state);
    console.log(`pipeline ${state.pipeline_id} is not running (${state.status}); logs in ${pipelineDir(state.pipeline_id)}`);
    return 0;
  }
  const after = await stopPipeline(state.pipeline_id);
  const left = after ? liveProcesses(after) : [];
  if (left.length > 0) {
    console.error(`spawn-red down: still running after SIGKILL: ${left.map((p) => `${p.what} pid ${p.pid}`).join(', ')}`);
    return 1;
  }
  console.log(`stopped ${state.pipeline_id}; logs stay in ${pipelineDir(state.pipeline_id)}`);
  return 0;
}

export function listCommand(args: ParsedArgs): number {
  const states = listStates();
  if (args.flags.json) {
    console.log(JSON.stringify(states.map((s) => ({ pipeline_id: s.pipeline_id, provider: s.provider, status: effectiveStatus(s), instances: s.instances.length, running: s.instances.filter((i) => alive(i.pid, i.pid_start)).length, launched_at: s.launched_at })), null, 2));
    return 0;
  }
  if (states.length === 0) {
    console.log('no pipelines');
    return 0;
  }
  const rows = [['PIPELINE', 'PROVIDER', 'STATUS', 'RUNNING', 'LAUNCHED']];
  for (const s of states) rows.push([s.pipeline_id, s.provider, effectiveStatus(s), `${s.instances.filter((i) => alive(i.pid, i.pid_start)).length}/${s.instances.length}`, s.launched_at]);
  const widths = rows[0].map((_, k) => Math.max(...rows.map((r) => r[k].length)));
  for (const r of rows) console.log(r.map((c, k) => c.padEnd(widths[k])).join('  ').trimEnd());
  return 0;
}

export async function logsCommand(args: ParsedArgs): Promise<number> {
  const state = loadOrFail(args.positional[0], 'logs');
  if (typeof state === 'number') return state;
  const stage = args.flags.stage as string | undefined;
  const chosen = state.instances.filter((i) => !stage || i.stage_id === stage);
  if (stage && chosen.length === 0) {
    console.error(`spawn-red logs: pipeline ${state.pipeline_id} has no stage "${stage}" (stages: ${[...new Set(state.instances.map((i) => i.stage_id))].join(', ')})`);
    return 1;
  }
  const offsets = new Map<InstanceState, number>();
  const print = (i: InstanceState) => {
    let text = '';
    try {
      const fd = fs.openSync(i.log, 'r');
      const size = fs.fstatSync(fd).size;
      const from = offsets.get(i) ?? 0;
      if (size > from) {
        const buf = Buffer.alloc(size - from);
        fs.readSync(fd, buf, 0, buf.length, from);
        text = buf.toString('utf8');
        offsets.set(i, size);
      }
      fs.closeSync(fd);
    } catch {
      return;
    }
    for (const line of text.split('\n')) if (line) console.log(`${i.stage_id}/${i.index} | ${line}`);
  };
  chosen.forEach(print);
  if (!args.flags.follow) return 0;
  let stop = false;
  const onSignal = () => (stop = true);
  process.once('SIGINT', onSignal);
  while (!stop) {
    await sleep(250);
    chosen.forEach(print);
  }
  return 0;
}

