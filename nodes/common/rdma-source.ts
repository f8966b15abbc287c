import type { NodeAPI } from 'node-red';
import { ConfigError } from './config';
import { FlowNode, readFlow, stageById } from './pipeline';
import { stageEndpoints } from './source';

/** The node types of the RDMA output side (as launcher/edges.ts lists them). */
const RDMA_OUT_TYPES = ['spawn-rdma-out', 'spawn rdma out'];
const DEFAULT_RDMA_PORT = 7500;

/**
 * Where an efa in that names a source stage connects: the port of that stage's one rdma out (read
 * from the deployed flow), on every instance the peer-discovery file lists for the stage; without
 * a peer file (the editor, one process) the stage is on this host. The RDMA twin of source.ts.
 */
export function rdmaSourceEndpoints(RED: NodeAPI, sourceStage: string): { endpoints: string[]; from: string } {
  const flow: FlowNode[] = [];
  RED.nodes.eachNode((n: object) => flow.push(n as FlowNode));
  const model = readFlow(flow);
  const stage = stageById(model, sourceStage);
  if (!stage) {
    const known = model.stages.map((s) => s.stageId).join(', ') || 'none';
    throw new ConfigError(`source stage "${sourceStage}" does not exist (stages: ${known})`);
  }
  const outs = flow.filter((n) => RDMA_OUT_TYPES.includes(n.type) && n.z === stage.tabId && n.d !== true && n.connection !== 'connect');
  if (outs.length === 0) throw new ConfigError(`source stage "${sourceStage}" has no rdma out for this efa in to read from`);
  if (outs.length > 1) {
    throw new ConfigError(`source stage "${sourceStage}" has ${outs.length} rdma out nodes; name one with an explicit endpoint`);
  }
  const raw = outs[0].port;
  const port = raw === undefined || raw === null || raw === '' ? DEFAULT_RDMA_PORT : Number(raw);
  return stageEndpoints(sourceStage, port);
}
