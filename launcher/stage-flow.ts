import { FlowNode, readFlow, Stage, STAGE_TYPE, stageById, TRANSPORT_TYPES } from '../nodes/common/pipeline';

/**
 * The flow one stage instance runs: the stage's own tab whole, every other tab disabled and
 * reduced to its stage and transport nodes. Input nodes still find their source stage's port in
 * the other tabs, while a node type that only another stage uses (and that this instance may not
 * have installed) cannot keep this stage from starting.
 */
export function stageFlow(flow: FlowNode[], stage: Stage): FlowNode[] {
  const subflows = new Set(flow.filter((n) => n.type === 'subflow').map((n) => n.id));
  const out: FlowNode[] = [];
  for (const n of flow) {
    if (n.type === 'tab') out.push(n.id === stage.tabId ? { ...n, disabled: false } : { ...n, disabled: true });
    else if (!n.z || n.z === stage.tabId || n.type === 'subflow' || subflows.has(n.z)) out.push(n);
    else if (n.type === STAGE_TYPE || TRANSPORT_TYPES[n.type]) out.push({ ...n, wires: [] });
  }
  return out;
}

export class StageNotFound extends Error {}

export function findStage(flow: FlowNode[], stageId: string): Stage {
  const model = readFlow(flow);
  const stage = stageById(model, stageId);
  if (!stage) {
    const known = model.stages.map((s) => s.stageId).join(', ') || 'none: no tab has a stage node';
    throw new StageNotFound(`stage "${stageId}" is not in the flow (stages: ${known})`);
  }
  return stage;
}
