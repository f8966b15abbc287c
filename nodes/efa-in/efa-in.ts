import type { NodeAPI } from 'node-red';
import { registerRdmaNode } from '../common/rdma-node';

// The "efa in" node ("spawn-efa-in"); the shared implementation is in ../common/rdma-node.ts.
export = (RED: NodeAPI) => registerRdmaNode(RED, 'in');
