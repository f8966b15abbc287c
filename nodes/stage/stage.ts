import type { Node, NodeAPI, NodeDef } from 'node-red';
import { FlowNode, readFlow } from '../common/pipeline';

/**
 * The stage node ("spawn-stage"): declares its tab as a pipeline stage. It has no wires and does
 * nothing at run time but show which stage (and, under the launcher, which instance) this is; the
 * launcher reads its settings from the flow (nodes/common/pipeline.ts).
 */
export = (RED: NodeAPI) => {
  function StageNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const flow: FlowNode[] = [];
    RED.nodes.eachNode((n: object) => flow.push(n as FlowNode));
    const stage = readFlow(flow).stages.find((s) => s.nodeId === def.id);
    if (!stage) {
      this.status({ fill: 'red', shape: 'ring', text: 'another stage node already declares this tab' });
      return;
    }
    const index = process.env.SPAWN_INSTANCE_INDEX;
    const count = process.env.STAGE_PEER_COUNT;
    const where = index !== undefined && count !== undefined ? `, instance ${Number(index) + 1} of ${count}` : '';
    this.status({ fill: 'grey', shape: 'dot', text: `stage ${stage.stageId}${stage.command ? ' (external program)' : ''}${where}` });
  }
  RED.nodes.registerType('spawn-stage', StageNode);
};
