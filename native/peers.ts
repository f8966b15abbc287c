import * as fs from 'fs';

/**
 * spawn's peer-discovery file (/etc/spawn/pipeline-peers.json), written on every instance before
 * its command starts, and the conveniences spawn derives from it: environment variables and an
 * MPI hostfile. Format: shared/reference/spawn-formats.md.
 */

export const DEFAULT_PEERS_FILE = '/etc/spawn/pipeline-peers.json';
export const DEFAULT_HOSTFILE = '/etc/spawn/hostfile';

export interface PeerInfo {
  stage_id: string;
  stage_index: number;
  instance_id: string;
  private_ip: string;
  public_ip?: string;
  dns_name: string;
  state: string;
  index: number;
  /** Added by spawn-red for transport selection; spawn's readers ignore unknown fields. */
  availability_zone?: string;
  placement_group?: string;
  /** The instance has an EFA interface (RDMA); written by the launchers for transport selection. */
  efa_enabled?: boolean;
}

export interface PeerFile {
  pipeline_id: string;
  stage_id: string;
  stage_index: number;
  instance_index: number;
  stage_peers: PeerInfo[];
  upstream_stages: Record<string, PeerInfo[]>;
  downstream_stages: Record<string, PeerInfo[]>;
  all_stages: Record<string, PeerInfo[]>;
  /** Added by spawn-red: the pipeline's CurveZMQ public key (Z85); the secret never is in this file. */
  curve_public_key?: string;
}

export class PeerFileError extends Error {}

/** The peer file to use: SPAWN_PEERS_FILE, else the default path when it exists, else none (the editor). */
export function peerFilePath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.SPAWN_PEERS_FILE) return env.SPAWN_PEERS_FILE;
  return fs.existsSync(DEFAULT_PEERS_FILE) ? DEFAULT_PEERS_FILE : undefined;
}

function checkPeers(list: unknown, where: string): PeerInfo[] {
  if (!Array.isArray(list)) throw new PeerFileError(`${where} is not a list`);
  list.forEach((p, i) => {
    if (!p || typeof p !== 'object' || typeof (p as PeerInfo).private_ip !== 'string' || !(p as PeerInfo).private_ip) {
      throw new PeerFileError(`${where}[${i}] has no private_ip`);
    }
  });
  return list as PeerInfo[];
}

function checkGroups(groups: unknown, where: string): Record<string, PeerInfo[]> {
  if (groups === undefined || groups === null) return {};
  if (typeof groups !== 'object' || Array.isArray(groups)) throw new PeerFileError(`${where} is not an object of stage id → peers`);
  const out: Record<string, PeerInfo[]> = {};
  for (const [k, v] of Object.entries(groups)) out[k] = checkPeers(v, `${where}.${k}`);
  return out;
}

/** Read and check a peer file; errors name the file and the field. */
export function loadPeerFile(path: string): PeerFile {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    throw new PeerFileError(`peer file ${path} cannot be read: ${(e as Error).message}`);
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new PeerFileError(`peer file ${path} is not JSON: ${(e as Error).message}`);
  }
  try {
    if (!raw || typeof raw !== 'object') throw new PeerFileError('not an object');
    if (typeof raw.stage_id !== 'string' || !raw.stage_id) throw new PeerFileError('stage_id is missing');
    return {
      pipeline_id: String(raw.pipeline_id ?? ''),
      stage_id: raw.stage_id,
      stage_index: Number(raw.stage_index ?? 0),
      instance_index: Number(raw.instance_index ?? 0),
      stage_peers: checkPeers(raw.stage_peers ?? [], 'stage_peers'),
      upstream_stages: checkGroups(raw.upstream_stages, 'upstream_stages'),
      downstream_stages: checkGroups(raw.downstream_stages, 'downstream_stages'),
      all_stages: checkGroups(raw.all_stages, 'all_stages'),
      ...(typeof raw.curve_public_key === 'string' ? { curve_public_key: raw.curve_public_key } : {}),
    };
  } catch (e) {
    throw new PeerFileError(`peer file ${path}: ${(e as Error).message}`);
  }
}

/** Every instance of `stageId`, by index: from all_stages, else upstream/downstream. */
export function peersOf(file: PeerFile, stageId: string): PeerInfo[] {
  const list = file.all_stages[stageId] ?? file.upstream_stages[stageId] ?? file.downstream_stages[stageId] ?? (file.stage_id === stageId ? file.stage_peers : undefined);
  return (list ?? []).slice().sort((a, b) => a.index - b.index);
}

/** `<STAGE>` in spawn's variable names: upper case, anything outside [A-Za-z0-9] as `_`. */
export function envName(stageId: string): string {
  return stageId.toUpperCase().replace(/[^A-Za-z0-9]/g, '_');
}

/** The environment variables spawn gives a stage command, derived from the peer file. */
export function spawnEnv(file: PeerFile): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [stage, list] of Object.entries(file.upstream_stages)) {
    const sorted = list.slice().sort((a, b) => a.index - b.index);
    if (sorted.length === 0) continue;
    const name = envName(stage);
    env[`UPSTREAM_${name}`] = sorted[0].private_ip;
    env[`UPSTREAM_${name}_DNS`] = sorted[0].dns_name ?? '';
    env[`UPSTREAM_${name}_ALL`] = sorted.map((p) => p.private_ip).join(',');
    env[`UPSTREAM_${name}_DNS_ALL`] = sorted.map((p) => p.dns_name ?? '').join(',');
  }
  const peers = file.stage_peers.slice().sort((a, b) => a.index - b.index);
  env.STAGE_PEERS = peers.map((p) => p.private_ip).join(',');
  env.STAGE_PEERS_DNS = peers.map((p) => p.dns_name ?? '').join(',');
  env.STAGE_PEER_COUNT = String(peers.length);
  env.SPAWN_PIPELINE_ID = file.pipeline_id;
  env.SPAWN_STAGE_ID = file.stage_id;
  env.SPAWN_STAGE_INDEX = String(file.stage_index);
  env.SPAWN_INSTANCE_INDEX = String(file.instance_index);
  return env;
}

/** spawn's MPI hostfile: one line per stage peer, `<private_ip> slots=<n>`. */
export function hostfile(file: PeerFile, slots = 1): string {
  return file.stage_peers
    .slice()
    .sort((a, b) => a.index - b.index)
    .map((p) => `${p.private_ip} slots=${slots}\n`)
    .join('');
}
