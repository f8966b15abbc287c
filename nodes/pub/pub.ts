import type { NodeAPI } from 'node-red';
import { registerPatternNode } from '../common/pattern-node';

// The ZeroMQ pub node ("spawn-pub"); the shared implementation is in ../common/pattern-node.ts.
export = (RED: NodeAPI) => registerPatternNode(RED, 'pub');
