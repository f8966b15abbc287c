import type { NodeAPI } from 'node-red';
import { registerPatternNode } from '../common/pattern-node';

// The ZeroMQ router node ("spawn-router"); the shared implementation is in ../common/pattern-node.ts.
export = (RED: NodeAPI) => registerPatternNode(RED, 'router');
