import type { NodeAPI } from 'node-red';
import { registerRdmaNode } from '../common/rdma-node';

// The "rdma out" node ("spawn-rdma-out"); the shared implementation is in ../common/rdma-node.ts.
export = (RED: NodeAPI) => registerRdmaNode(RED, 'out');
