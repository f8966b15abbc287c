import * as fs from 'fs';
import * as path from 'path';
import type { EC2Client, Instance } from '@aws-sdk/client-ec2';
import type { ParsedArgs } from '../cli';
import { pipelineJson } from '../export';
import { PlanError, readLaunchInput } from '../local/plan';
import { alive, listStates, liveProcesses, PipelineState, pipelineDir, readState } from '../local/state';
import { Ec2Api, makeClient, placeholder, RetryPolicy, WaitPolicy } from './api';
import { Ec2Error, Ec2PlanError, toEc2Error } from './errors';
import { Ec2Options, launchRegion, TAG } from './plan';
import { consoleOutput, findInstances, instanceStates, LaunchFailed, Output, provision, teardown } from './provision';
import { isEc2Pipeline } from './dispatch';
import { Ec2State, listEc2States, readEc2State, writeEc2State } from './state';
import { flowUsesQuic } from '../local/quic-certs';

import type { SSMClient } from '@aws-sdk/client-ssm';
import { makeSsmClient, SecretStore } from './secrets';
import { flowUsesCurve } from './curve-secrets';

/**
 * The ec2 provider's verbs, as cli.ts dispatches them: `launch --provider ec2`, and `status`,
 * `down`, `logs` for a pipeline whose state folder holds ec2.json; `list` shows local and ec2
 * pipelines together. Errors reach the user as one line each (errors.ts), exit code 1.
 */

/** Flags `launch --provider ec2` takes (with the local provider's that make sense here). */
const LAUNCH_FLAGS = ['provider', 'pipeline-id', 'flow', 'on-failure', 'region', 'key-name', 'subnet', 'instance-profile', 'package', 'ssh-cidr', 'ami', 'kms-key', 'dry-run', 'show-user-data', 'detached', 'help'];
const BOOLEAN_FLAGS = ['dry-run', 'show-user-data', 'detached', 'json', 'watch', 'help'];

/** Test hooks: a client (e.g. under aws-sdk-client-mock), faster retries and waiters, where output goes. */
export interface Ec2VerbDeps {
  client?: EC2Client;
  /** SSM (the instances' secrets), e.g. under aws-sdk-client-mock or at moto. */
  ssm?: SSMClient;
  retry?: Partial<RetryPolicy>;
  wait?: Partial<WaitPolicy>;
  out?: Output;
  err?: (line: string) => void;
  print?: (text: string) => void;
}

/** Waiter settings from the environment (SPAWN_RED_EC2_WAIT="minDelay,maxDelay,maxWaitTime" seconds), for emulators and tests. */
function waitFromEnv(): Partial<WaitPolicy> | undefined {
  const v = process.env.SPAWN_RED_EC2_WAIT;
  if (!v) return undefined;
  const [minDelay, maxDelay, maxWaitTime] = v.split(',').map(Number);
  const w: Partial<WaitPolicy> = {};
  if (minDelay > 0) w.minDelay = minDelay;
  if (maxDelay > 0) w.maxDelay = maxDelay;
  if (maxWaitTime > 0) w.maxWaitTime = maxWaitTime;
  return w;
}

/** Retry settings from the environment (SPAWN_RED_EC2_RETRY="attempts,baseMs,capMs"), for emulators and tests. */
function retryFromEnv(): Partial<RetryPolicy> | undefined {
  const v = process.env.SPAWN_RED_EC2_RETRY;
  if (!v) return undefined;
  const [attempts, baseMs, capMs] = v.split(',').map(Number);
  const r: Partial<RetryPolicy> = {};
  if (attempts >= 1) r.attempts = Math.floor(attempts);
  if (baseMs > 0) r.baseMs = baseMs;
  if (capMs > 0) r.capMs = capMs;
  return r;
}

function flagString(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags[name];
  return typeof v === 'string' ? v : undefined;
}

/** Usage problems: unknown flags, valued flags without a value. */
function flagProblems(args: ParsedArgs, known: string[]): string | undefined {
  const unknown = Object.keys(args.flags).filter((f) => !known.includes(f));
  if (unknown.length) return `unknown option ${unknown.map((f) => `--${f}`).join(', ')} for the ec2 provider`;
  const bare = known.filter((f) => !BOOLEAN_FLAGS.includes(f) && args.flags[f] === true);
  if (bare.length) return `--${bare[0]} needs a value`;
  return undefined;
}

function apiFor(region: string | undefined, pipelineId: string, deps: Ec2VerbDeps, dryRun = false, print?: (t: string) => void): Ec2Api {
  return new Ec2Api({
    client: dryRun ? deps.client : (deps.client ?? makeClient(region)),
    dryRun,
    pipelineId,
    retry: { ...retryFromEnv(), ...deps.retry },
    wait: { ...waitFromEnv(), ...deps.wait },
    print: print ?? deps.print,
  });
}

async function resolveRegion(explicit: string | undefined, deps: Ec2VerbDeps, dryRun: boolean): Promise<string> {
  if (explicit) return explicit;
  const client = deps.client ?? makeClient(undefined);
  try {
    return await client.config.region();
  } catch (e) {
    if (dryRun) return placeholder('region from the AWS SDK chain: none configured, pass --region');
    throw toEc2Error('finding the AWS region', e);
  }
}

function printProblems(verb: string, e: unknown, err: (line: string) => void): boolean {
  if (e instanceof Ec2PlanError || e instanceof PlanError) {
    for (const p of e.problems) err(`spawn-red ${verb}: ${p}`);
    return true;
  }
  if (e instanceof Ec2Error) {
    err(`spawn-red ${verb}: ${e.message}`);
    return true;
  }
  return false;
}

export async function ec2LaunchCommand(args: ParsedArgs, deps: Ec2VerbDeps = {}): Promise<number> {
  const err = deps.err ?? ((l: string) => console.error(l));
  const out = deps.out ?? consoleOutput();
  const file = args.positional[0];
  if (!file) {
    err('spawn-red launch: name a flow or pipeline file');
    return 2;
  }
  const usage = flagProblems(args, LAUNCH_FLAGS);
  if (usage) {
    err(`spawn-red launch: ${usage}`);
    return 2;
  }
  const dryRun = Boolean(args.flags['dry-run']);
  const options: Ec2Options = {
    region: flagString(args, 'region'),
    keyName: flagString(args, 'key-name'),
    subnet: flagString(args, 'subnet'),
    instanceProfile: flagString(args, 'instance-profile'),
    packageSpec: flagString(args, 'package'),
    sshCidrs: flagString(args, 'ssh-cidr')
      ?.split(',')
      .map((c) => c.trim())
      .filter(Boolean),
    ami: flagString(args, 'ami'),
    dryRun,
  };
  let input;
  let region: string;
  try {
    input = readLaunchInput(file, { pipelineId: flagString(args, 'pipeline-id'), flowFile: flagString(args, 'flow') });
    const onFailure = args.flags['on-failure'];
    if (onFailure !== undefined) {
      if (onFailure !== 'stop' && onFailure !== 'continue') {
        err(`spawn-red launch: --on-failure must be stop or continue, not "${String(onFailure)}"`);
        return 2;
      }
      input.pipeline.on_failure = onFailure;
    }
    region = await resolveRegion(launchRegion(input.pipeline, options.region), deps, dryRun);
  } catch (e) {
    if (printProblems('launch', e, err)) return 1;
    throw e;
  }
  const id = input.pipeline.pipeline_id;

  if (!dryRun) {
    const previous = readEc2State(id);
    if (previous && previous.status !== 'down' && previous.status !== 'failed') {
      err(`spawn-red launch: pipeline "${id}" is on EC2 already (${previous.status}, launched ${previous.launched_at}); remove it first with: spawn-red down ${id}`);
      return 1;
    }
    const local = readState(pipelineDir(id));
    if (local && liveProcesses(local).length > 0) {
      err(`spawn-red launch: pipeline "${id}" is running locally; stop it with: spawn-red down ${id}`);
      return 1;
    }
  }

  const rawPrint = deps.print ?? ((t: string) => console.log(t));
  // The dry run's heading comes with its first call (a plan refused before any call prints only the problems).
  let headed = false;
  const print = (t: string) => {
    if (dryRun && !headed) rawPrint(`spawn-red launch --dry-run: pipeline ${id} on EC2 in ${region}; the calls a launch makes, in order (none is made):`);
    headed = true;
    rawPrint(t);
  };
  const api = apiFor(region, id, deps, dryRun, print);
  const abort = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts === 1) {
      err(`\nspawn-red launch: interrupted: removing what the launch created (Ctrl-C again leaves it; spawn-red down ${id} removes it later)`);
      abort.abort();
    } else process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const userData: Array<[string, string]> = [];
  // A flow with QUIC gets a certificate per instance through SSM Parameter Store (secrets.ts), one
  // with CurveZMQ encryption the pipeline's key file (curve-secrets.ts).
  const secretKinds = { quic: flowUsesQuic(input.flow), curve: flowUsesCurve(input.flow) };
  const secrets = secretKinds.quic || secretKinds.curve
    ? new SecretStore({ client: dryRun ? deps.ssm : (deps.ssm ?? makeSsmClient(region)), dryRun, print, kmsKeyId: flagString(args, 'kms-key'), pipelineId: id })
    : undefined;
  try {
    if (!dryRun) fs.mkdirSync(pipelineDir(id), { recursive: true });
    const state = await provision({
      api,
      input,
      options,
      region,
      out: dryRun ? { info: () => undefined, progress: () => undefined } : out,
      abortSignal: abort.signal,
      onUserData: (stage, script) => userData.push([stage, script]),
      secrets,
      secretKinds,
    });
    if (dryRun) {
      print(`\n${api.log.length} calls; user data: ${userData.map(([s, u]) => `${s} ${Buffer.byteLength(u)} bytes`).join(', ')} (limit 16384)`);
      if (args.flags['show-user-data']) for (const [stage, script] of userData) print(`\n# ---- user data of stage ${stage} ----\n${script}`);
      return 0;
    }
    fs.writeFileSync(path.join(pipelineDir(id), 'pipeline.json'), pipelineJson(input.pipeline));
    out.info(statusTable(state));
    if (state.secrets_path) {
      const what = [secretKinds.quic ? 'its QUIC certificate' : '', secretKinds.curve ? 'the CurveZMQ keys' : ''].filter(Boolean).join(' and ');
      out.info(`Secrets: each instance reads ${what} from SSM Parameter Store (${state.secrets_path}/<stage>/<index>/) at start; spawn-red down deletes them.`);
    }
    out.info(
      [
        '',
        'The instances now install Node.js and spawn-red, wait for each other, write /etc/spawn/pipeline-peers.json',
        'and start their stage as the spawn-red service (a few minutes). On an instance: journalctl -u spawn-red',
        `spawn-red status ${id} | spawn-red down ${id} (terminates the instances and deletes the groups)`,
      ].join('\n'),
    );
    return 0;
  } catch (e) {
    if (e instanceof LaunchFailed) {
      err(`spawn-red launch: ${e.cause.message}`);
      if (e.rollbackError) err(`spawn-red launch: removing what the launch created failed too: ${e.rollbackError.message}`);
      else if (e.rollback) {
        const r = e.rollback;
        const parts = [
          r.terminated.length ? `terminated ${r.terminated.length} instance${r.terminated.length === 1 ? '' : 's'}` : '',
          r.placementGroups.length ? `deleted placement group ${r.placementGroups.join(', ')}` : '',
          r.securityGroups.length ? `deleted security group ${r.securityGroups.join(', ')}` : '',
          r.parameters?.length ? `deleted ${r.parameters.length} SSM parameters` : '',
        ].filter(Boolean);
        err(`spawn-red launch: rolled back${parts.length ? `: ${parts.join(', ')}` : ''}; nothing this launch created is left in EC2`);
      }
      return 1;
    }
    if (printProblems('launch', e, err)) return 1;
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function tagsOf(i: Instance): Record<string, string> {
  return Object.fromEntries((i.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));
}

/** The status table of an ec2 pipeline, from ec2.json (as last seen). */
export function statusTable(state: Ec2State): string {
  const rows = [['STAGE', 'INSTANCE', 'ID', 'TYPE', 'STATE', 'PRIVATE IP', 'PUBLIC IP', 'ZONE']];
  for (const i of [...state.instances].sort((a, b) => stageOrder(state, a.stage_id) - stageOrder(state, b.stage_id) || a.index - b.index)) {
    const stage = state.stages.find((s) => s.stage_id === i.stage_id);
    rows.push([i.stage_id, String(i.index), i.instance_id, `${stage?.instance_type ?? '?'}${stage?.spot ? ' (spot)' : ''}`, i.state ?? '?', i.private_ip ?? '-', i.public_ip ?? '-', i.availability_zone ?? '-']);
  }
  const widths = rows[0].map((_, k) => Math.max(...rows.map((r) => r[k].length)));
  const lines = rows.map((r) => r.map((c, k) => c.padEnd(widths[k])).join('  ').trimEnd());
  const groups = [state.security_group_id ? `security group ${state.security_group_id}` : '', state.placement_group ? `placement group ${state.placement_group}` : ''].filter(Boolean).join(', ');
  const head = `pipeline ${state.pipeline_id} (ec2, ${state.region}): ${state.status}${state.reason && state.status !== 'running' ? ` (${state.reason})` : ''}${groups ? `; ${groups}` : ''}`;
  return [head, ...(state.instances.length ? lines : ['no instances'])].join('\n');
}

function stageOrder(state: Ec2State, stageId: string): number {
  const s = state.stages.find((x) => x.stage_id === stageId);
  return s ? s.stage_index : 1e6;
}

export function statusJson(state: Ec2State): object {
  return {
    pipeline_id: state.pipeline_id,
    provider: 'ec2',
    status: state.status,
    reason: state.reason,
    region: state.region,
    launched_at: state.launched_at,
    ended_at: state.ended_at,
    security_group_id: state.security_group_id,
    placement_group: state.placement_group,
    subnet_id: state.subnet_id,
    availability_zone: state.availability_zone,
    package: state.package,
    stages: state.stages,
    instances: state.instances,
  };
}

/** The pipeline as EC2 has it now: its instances (this launch's, by tag), merged into ec2.json. */
async function refresh(api: Ec2Api, id: string, state: Ec2State | undefined): Promise<Ec2State | undefined> {
  const found = (await findInstances(api, id, ['pending', 'running', 'stopping', 'stopped', 'shutting-down', 'terminated'])).filter(
    (i) => !state || tagsOf(i)[TAG.launch] === state.launch_token,
  );
  if (!state) {
    if (found.length === 0) return undefined;
    // No ec2.json (another machine launched it, or it was deleted): show what the tags say.
    const token = tagsOf(found[0])[TAG.launch] ?? '';
    state = {
      pipeline_id: id,
      provider: 'ec2',
      status: 'running',
      launch_token: token,
      region: String(await api.client.config.region()),
      source: '(unknown: no ec2.json here)',
      package: '?',
      launched_at: found.map((i) => i.LaunchTime?.toISOString() ?? '').sort()[0] ?? '',
      stages: [],
      instances: [],
    };
    const stages = new Map<string, { index: number; type: string; ids: string[]; spot: boolean }>();
    for (const i of found) {
      const t = tagsOf(i);
      const s = stages.get(t[TAG.stageId]) ?? stages.set(t[TAG.stageId], { index: Number(t[TAG.stageIndex] ?? 0), type: String(i.InstanceType), ids: [], spot: i.InstanceLifecycle === 'spot' }).get(t[TAG.stageId])!;
      s.ids.push(i.InstanceId!);
    }
    state.stages = [...stages].map(([stage_id, s]) => ({ stage_id, stage_index: s.index, instance_type: s.type, instance_count: s.ids.length, spot: s.spot, efa: false, instance_ids: s.ids }));
  }
  state.instances = instanceStates(found, state.instances);
  const live = state.instances.filter((i) => i.state === 'running' || i.state === 'pending');
  if (state.status === 'running' && live.length === 0 && state.instances.length > 0) {
    state.status = 'failed';
    state.reason = 'no instance runs any more (terminated outside spawn-red, or spot interruptions); spawn-red down removes the groups';
  }
  return state;
}

export async function ec2StatusCommand(args: ParsedArgs, deps: Ec2VerbDeps = {}): Promise<number> {
  const err = deps.err ?? ((l: string) => console.error(l));
  const print = deps.print ?? ((t: string) => console.log(t));
  const id = args.positional[0];
  if (!id) {
    err('spawn-red status: name the pipeline id (spawn-red list shows them)');
    return 2;
  }
  const usage = flagProblems(args, ['provider', 'region', 'json', 'watch', 'help']);
  if (usage) {
    err(`spawn-red status: ${usage}`);
    return 2;
  }
  const saved = readEc2State(id);
  try {
    const api = apiFor(flagString(args, 'region') ?? saved?.region, id, deps);
    for (;;) {
      const state = await refresh(api, id, saved);
      if (!state) {
        err(`spawn-red status: no ec2 pipeline "${id}" here, and no instance tagged ${TAG.pipelineId}=${id} in the region (spawn-red list shows pipelines)`);
        return 1;
      }
      if (saved) writeEc2State(state);
      print(args.flags.json ? JSON.stringify(statusJson(state), null, 2) : statusTable(state));
      if (!args.flags.watch) return 0;
      await new Promise((r) => setTimeout(r, 5000));
    }
  } catch (e) {
    if (printProblems('status', e, err)) return 1;
    throw e;
  }
}

export async function ec2DownCommand(args: ParsedArgs, deps: Ec2VerbDeps = {}): Promise<number> {
  const err = deps.err ?? ((l: string) => console.error(l));
  const out = deps.out ?? consoleOutput();
  const id = args.positional[0];
  if (!id) {
    err('spawn-red down: name the pipeline id (spawn-red list shows them)');
    return 2;
  }
  const usage = flagProblems(args, ['provider', 'region', 'dry-run', 'help']);
  if (usage) {
    err(`spawn-red down: ${usage}`);
    return 2;
  }
  const state = readEc2State(id);
  const dryRun = Boolean(args.flags['dry-run']);
  try {
    const region = await resolveRegion(flagString(args, 'region') ?? state?.region, deps, dryRun);
    const api = apiFor(region, id, deps, dryRun);
    out.info(`spawn-red: removing ${id} from EC2 in ${region}${dryRun ? ' (dry run: the calls, none made)' : ''}`);
    // The instances' secrets: when ec2.json says there were some, or when there is no ec2.json to say.
    const secrets = !state || state.secrets_path ? new SecretStore({ client: dryRun ? deps.ssm : (deps.ssm ?? makeSsmClient(region)), dryRun, print: deps.print, pipelineId: id }) : undefined;
    const r = await teardown(api, id, state, out, undefined, undefined, secrets);
    if (dryRun) return 0;
    if (r.terminated.length + r.placementGroups.length + r.securityGroups.length + (r.parameters?.length ?? 0) === 0) out.info(`nothing of ${id} is left in EC2 (${region})`);
    else out.info(`removed ${id}: nothing of it is left in EC2; its state stays in ${pipelineDir(id)}`);
    return 0;
  } catch (e) {
    if (printProblems('down', e, err)) return 1;
    throw e;
  }
}

export async function ec2LogsCommand(args: ParsedArgs, deps: Ec2VerbDeps = {}): Promise<number> {
  const print = deps.print ?? ((t: string) => console.log(t));
  const id = args.positional[0]!;
  const state = readEc2State(id);
  const ips = (state?.instances ?? []).filter((i) => !args.flags.stage || i.stage_id === args.flags.stage).map((i) => `${i.stage_id}/${i.index} ${i.public_ip ?? i.private_ip ?? i.instance_id}`);
  print(
    [
      `pipeline ${id} runs on EC2: each instance logs to its journal (the spawn-red service), and its setup to /var/log/cloud-init-output.log.`,
      'With a key pair (--key-name) and SSH admitted (--ssh-cidr): ssh ec2-user@<address> journalctl -u spawn-red -f',
      ...ips.map((l) => `  ${l}`),
    ].join('\n'),
  );
  return 0;
}

/** The local provider's status with a dead supervisor shown as stale (as local/verbs.ts shows it). */
function localStatus(s: PipelineState): string {
  if (['stopped', 'failed', 'completed'].includes(s.status)) return s.status;
  return alive(s.supervisor_pid, s.supervisor_start) ? s.status : 'stale';
}

/** `list` with both providers' pipelines. */
export function listAllCommand(args: ParsedArgs, print: (t: string) => void = (t) => console.log(t)): number {
  const local = listStates().filter((s) => !isEc2Pipeline(s.pipeline_id));
  const ec2 = listEc2States().filter((s) => isEc2Pipeline(s.pipeline_id));
  const rows = [
    ...local.map((s) => ({
      pipeline_id: s.pipeline_id,
      provider: 'local',
      status: localStatus(s),
      instances: s.instances.length,
      running: s.instances.filter((i) => alive(i.pid, i.pid_start)).length,
      launched_at: s.launched_at,
    })),
    ...ec2.map((s) => ({
      pipeline_id: s.pipeline_id,
      provider: 'ec2',
      status: s.status,
      instances: s.stages.reduce((n, st) => n + st.instance_count, 0),
      running: s.instances.filter((i) => i.state === 'running').length,
      launched_at: s.launched_at,
      region: s.region,
    })),
  ].sort((a, b) => a.launched_at.localeCompare(b.launched_at));
  if (args.flags.json) {
    print(JSON.stringify(rows, null, 2));
    return 0;
  }
  if (rows.length === 0) {
    print('no pipelines');
    return 0;
  }
  const table = [['PIPELINE', 'PROVIDER', 'STATUS', 'RUNNING', 'LAUNCHED']];
  for (const r of rows) table.push([r.pipeline_id, r.provider === 'ec2' ? `ec2 ${(r as { region?: string }).region ?? ''}`.trim() : r.provider, r.status, `${r.running}/${r.instances}`, r.launched_at]);
  const widths = table[0].map((_, k) => Math.max(...table.map((r) => r[k].length)));
  for (const r of table) print(r.map((c, k) => c.padEnd(widths[k])).join('  ').trimEnd());
  return 0;
}
