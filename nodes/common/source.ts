import type { NodeAPI } from 'node-red';
import { loadPeerFile, PeerFileError, peerFilePath, peersOf } from '../../native/peers';
import { ConfigError } from './config';
import { FlowNode, InputPattern, readFlow, resolveSource } from './pipeline';

/**
 * Where an input node that names a source stage connects: the port of that stage's matching
 * output node (read from the deployed flow), on every instance the peer-discovery file lists for
 * the stage; without a peer file (the editor, one process) the stage is on this host.
 */
export function sourceEndpoints(RED: NodeAPI, pattern: InputPattern, sourceStage: string): { endpoints: string[]; from: string } {
  const flow: FlowNode[] = [];
  RED.nodes.eachNode((n: object) => flow.push(n as FlowNode));
  const resolved = resolveSource(readFlow(flow), pattern, sourceStage);
  if (!resolved.ok) throw new ConfigError(resolved.problem);
  return stageEndpoints(sourceStage, resolved.port);
}

/**
 * `tcp://<ip>:<port>` for every instance of `sourceStage` in the peer-discovery file; without a
 * peer file (the editor, one process) the stage is on this host. Shared by the ZeroMQ and RDMA
 * inputs (an RDMA input's side channel is TCP on the same port).
 */
export function stageEndpoints(sourceStage: string, port: number): { endpoints: string[]; from: string } {
  const file = peerFilePath();
  if (!file) return { endpoints: [`tcp://127.0.0.1:${port}`], from: 'this host (no peer file)' };
  let peers;
  try {
    peers = peersOf(loadPeerFile(file), sourceStage);
  } catch (e) {
    throw new ConfigError((e as PeerFileError).message);
  }
  if (peers.length === 0) throw new ConfigError(`peer file ${file} lists no instance of source stage "${sourceStage}"`);
  return { endpoints: peers.map((p) => `tcp://${p.private_ip}:${port}`), from: `peer file ${file}` };
}
