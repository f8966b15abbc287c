import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DEFAULT_HOSTFILE, DEFAULT_PEERS_FILE, hostfile, loadPeerFile, PeerFile, spawnEnv } from '../native/peers';
import { FlowNode, Stage } from '../nodes/common/pipeline';
import { unusedCoreNodeFiles } from './core-nodes';
import { parseJson } from './json-location';
import { tuneGcForStreaming } from './gc-tuning';
import { tuneMallocForStreaming } from './malloc-tuning';
import { startRuntime } from './runtime';
import { findStage, stageFlow } from './stage-flow';
import { fetchInstanceSecrets, FetchedSecrets, SecretsError } from './instance-secrets';

/**
 * `spawn-red run`: one stage instance, headless. Node-RED stages run their tab in an embedded
 * Node-RED; external-program stages run their command. Both get the peer-discovery file and the
 * environment spawn derives from it. Problems that make running pointless (unknown stage, a peer
 * file that was named but is missing, a flow that does not load) fail at once with exit code 1.
 */

export interface RunOptions {
  flowFile: string;
  /** Run one stage's tab; without it, the whole flow (every tab). */
  stageId?: string;
  /** Peer-discovery file; else SPAWN_PEERS_FILE; else /etc/spawn/pipeline-peers.json if present. */
  peersFile?: string;
  /** Write spawn's MPI hostfile here (true: /etc/spawn/hostfile). */
  hostfile?: string | true;
  userDir?: string;
  logLevel?: string;
  nodesDirs?: string[];
  /** Fetch the instance's secrets first: `ssm:/path` (else $SPAWN_SECRETS); see instance-secrets.ts. */
  secrets?: string;
  /** Where they go (default: $RUNTIME_DIRECTORY/secrets under systemd, else a new temporary folder). */
  secretsDir?: string;
}

export class RunError extends Error {}

/** Resolves once the run has started, with a promise for its exit code. */
export interface Running {
  exited: Promise<number>;
  stop(): Promise<void>;
}

function readFlowFile(file: string): FlowNode[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new RunError(`flow file ${file} does not exist or cannot be read`);
  }
  const parsed = parseJson(text);
  if (!parsed.ok) throw new RunError(`flow file ${file}: line ${parsed.line}, column ${parsed.column}: ${parsed.reason}`);
  const flow = parsed.value;
  if (!Array.isArray(flow)) throw new RunError(`flow file ${file} is not a Node-RED flow (a JSON array of nodes)`);
  return flow as FlowNode[];
}

function resolvePeers(opts: RunOptions, stage: Stage | undefined): { path?: string; file?: PeerFile } {
  let named = opts.peersFile ?? process.env.SPAWN_PEERS_FILE;
  if (named && !fs.existsSync(named)) throw new RunError(`peer file ${named} does not exist`);
  if (!named && fs.existsSync(DEFAULT_PEERS_FILE)) named = DEFAULT_PEERS_FILE;
  if (!named) return {};
  const file = loadPeerFile(named);
  if (stage && file.stage_id !== stage.stageId) {
    throw new RunError(`peer file ${named} is for stage "${file.stage_id}", not "${stage.stageId}"`);
  }
  return { path: path.resolve(named), file };
}

export async function startRun(opts: RunOptions): Promise<Running> {
  const flow = readFlowFile(opts.flowFile);
  const stage = opts.stageId ? findStage(flow, opts.stageId) : undefined;
  let peers;
  try {
    peers = resolvePeers(opts, stage);
  } catch (e) {
    throw e instanceof RunError ? e : new RunError((e as Error).message);
  }

  // The environment of the stage: spawn's derived variables, then the stage's own settings.
  const env: Record<string, string> = {};
  if (peers.file) Object.assign(env, spawnEnv(peers.file), { SPAWN_PEERS_FILE: peers.path! });
  const secrets = await runSecrets(opts);
  if (secrets) Object.assign(env, secrets.env);
  if (stage) Object.assign(env, stage.env);
  // Exactly-once receivers keep what they finished across a crash under the user directory; a
  // temporary one dies with the process, so a launched stage's go where a restart finds them.
  if (peers.file && !opts.userDir && !env.SPAWN_DELIVERY_DIR && !process.env.SPAWN_DELIVERY_DIR) {
    env.SPAWN_DELIVERY_DIR = path.join(process.env.SPAWN_RED_HOME || path.join(os.homedir(), '.spawn-red'), 'delivery', peers.file.pipeline_id);
  }
  if (opts.hostfile) {
    if (!peers.file) throw new RunError('--hostfile needs a peer file: the hostfile lists the stage\'s instances');
    const target = opts.hostfile === true ? DEFAULT_HOSTFILE : opts.hostfile;
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, hostfile(peers.file));
  }
  const where = stage ? `stage "${stage.stageId}"${peers.file ? ` (instance ${peers.file.instance_index + 1} of ${peers.file.stage_peers.length})` : ''}` : 'the whole flow';
  const source = peers.path ? `peers from ${peers.path}` : 'no peer file: source stages on 127.0.0.1';

  if (stage?.command) return runExternal(stage, env, `${where}: external program: ${stage.command}; ${source}`);

  Object.assign(process.env, env);
  const runFlow = stage ? stageFlow(flow, stage) : flow;
  try {
    tuneGcForStreaming(runFlow.map((n) => n.type));
    tuneMallocForStreaming();
  } catch (e) {
    throw new RunError(`${where}: ${(e as Error).message}`);
  }
  const tempDir = opts.userDir ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-run-'));
  const userDir = opts.userDir ?? tempDir!;
  fs.mkdirSync(userDir, { recursive: true });
  const flowFile = path.join(userDir, stage ? `flows-${stage.stageId}.json` : 'flows.json');
  fs.writeFileSync(flowFile, JSON.stringify(runFlow, null, 1));
  const nodesExcludes = process.env.SPAWN_RED_ALL_NODES ? [] : unusedCoreNodeFiles(runFlow);
  const rt = await startRuntime({ flowFile, userDir, logLevel: opts.logLevel, nodesDirs: opts.nodesDirs, settings: { nodesExcludes } });
  const cleanup = () => {
    if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
  };

  // A node type that is not installed leaves Node-RED waiting forever: fail instead, naming it.
  const missing = flow
    .filter((n) => (!stage || n.z === stage.tabId) && n.type !== 'tab' && n.type !== 'group' && n.type !== 'junction' && !n.type.startsWith('subflow'))
    .filter((n) => !rt.RED.nodes.getType(n.type));
  if (missing.length > 0) {
    await rt.stop();
    cleanup();
    const list = [...new Set(missing.map((n) => n.type))].map((t) => `"${t}"`).join(', ');
    throw new RunError(`${where}: the flow does not load: node type${missing.length > 1 ? 's' : ''} ${list} not installed`);
  }
  console.log(`spawn-red: running ${where}; ${source}`);
  let resolveExit: (code: number) => void = () => undefined;
  const exited = new Promise<number>((r) => (resolveExit = r));
  let stopping: Promise<void> | undefined;
  return {
    exited,
    stop() {
      stopping ??= rt.stop().then(
        () => {
          cleanup();
          resolveExit(0);
        },
        (e) => {
          console.error(`spawn-red: stopping ${where} failed: ${String(e)}`);
          cleanup();
          resolveExit(1);
        },
      );
      return stopping;
    },
  };
}

/** The instance's secrets (e.g. its QUIC certificate), fetched before anything starts: none without --secrets / SPAWN_SECRETS. */
async function runSecrets(opts: RunOptions): Promise<FetchedSecrets | undefined> {
  const spec = opts.secrets ?? process.env.SPAWN_SECRETS;
  if (!spec) return undefined;
  const runtimeDir = process.env.RUNTIME_DIRECTORY?.split(':')[0];
  const temporary = !opts.secretsDir && !runtimeDir;
  const dir = opts.secretsDir ?? (runtimeDir ? path.join(runtimeDir, 'secrets') : fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-secrets-')));
  // A folder made here goes when the process does (systemd removes its RuntimeDirectory itself).
  if (temporary) process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  try {
    const fetched = await fetchInstanceSecrets(spec, dir);
    console.log(`spawn-red: secrets from ${spec}: ${fetched.files.join(', ')} in ${dir}`);
    return fetched;
  } catch (e) {
    throw e instanceof SecretsError ? new RunError(e.message) : e;
  }
}

function runExternal(stage: Stage, env: Record<string, string>, banner: string): Running {
  console.log(`spawn-red: running ${banner}`);
  const child = spawn(stage.command, { shell: true, stdio: 'inherit', env: { ...process.env, ...env } });
  const exited = new Promise<number>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? (signal === 'SIGTERM' || signal === 'SIGINT' ? 0 : 1)));
    child.on('error', (e) => {
      console.error(`spawn-red: stage "${stage.stageId}": cannot start "${stage.command}": ${e.message}`);
      resolve(1);
    });
  });
  return {
    exited,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
