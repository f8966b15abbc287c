import type { PeerInfo } from './peers';

/**
 * `auto` transport selection, after the network streaming guide's table:
 *   both stages have EFA, in one placement group     → RDMA
 *   same availability zone                            → TCP (ZeroMQ)
 *   different availability zones, or regions          → QUIC
 * The decision is per edge (a pair of stages) and symmetric, so the binding side and the
 * connecting side of an edge come to the same answer from the same peer-discovery file.
 */

export type Transport = 'tcp' | 'quic' | 'rdma';

export interface Selection {
  transport: Transport;
  /** Why, in words, for the log, the node status and `spawn-red graph`. */
  why: string;
}

/** The region of an availability zone name: "us-east-1a" → "us-east-1"; "use1-az1" ids stay as they are. */
export function regionOf(zone: string): string {
  return /^[a-z]{2}(-[a-z]+)+-\d+[a-z]$/.test(zone) ? zone.slice(0, -1) : zone;
}

export function selectTransport(a: PeerInfo[], b: PeerInfo[]): Selection {
  const all = [...a, ...b];
  if (all.length === 0) return { transport: 'tcp', why: 'no instances listed: one host assumed' };
  const groups = new Set(all.map((p) => p.placement_group ?? ''));
  const group = [...groups][0];
  if (all.every((p) => p.efa_enabled === true) && groups.size === 1 && group && group !== 'auto') {
    return { transport: 'rdma', why: `both stages have EFA in placement group ${group}` };
  }
  const zones = new Set(all.map((p) => p.availability_zone ?? ''));
  if (zones.has('')) {
    return { transport: 'tcp', why: 'no availability zone in the peer file: one network assumed' };
  }
  if (zones.size === 1) return { transport: 'tcp', why: `same availability zone ${[...zones][0]}` };
  const regions = new Set([...zones].map(regionOf));
  if (regions.size > 1) return { transport: 'quic', why: `across regions (${[...regions].sort().join(', ')})` };
  return { transport: 'quic', why: `across availability zones (${[...zones].sort().join(', ')})` };
}

/** What a stage definition says about placement (spawn's stage fields). */
export interface StagePlacement {
  region?: string;
  placement_group?: string;
  efa_enabled?: boolean;
}

/**
 * `auto` for an edge as far as the pipeline definition tells (for `spawn-red graph`): RDMA and
 * cross-region are known before launch; zones are known only once instances run (peer file).
 */
export function selectForStages(a: StagePlacement, b: StagePlacement): { transport: Transport | 'tcp or quic'; why: string } {
  if (a.efa_enabled && b.efa_enabled && a.placement_group && a.placement_group === b.placement_group) {
    return { transport: 'rdma', why: a.placement_group === 'auto' ? 'both stages have EFA in the pipeline placement group' : `both stages have EFA in placement group ${a.placement_group}` };
  }
  if (a.region && b.region && a.region !== b.region) return { transport: 'quic', why: `across regions (${a.region}, ${b.region})` };
  return { transport: 'tcp or quic', why: 'TCP within an availability zone, QUIC across zones: decided at run time from the peer file' };
}
