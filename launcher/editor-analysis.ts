import * as path from 'path';
import { exportPipeline, pipelineJson, SpawnPipeline } from './export';
import { FlowView, nodeWhere, readFlowView } from './edges';
import { pipelineGraph, PipelineGraph } from './graph';
import { formatProblem, Problem, stageWhere, tabWhere } from './validate';

/**
 * What the editor's "spawn" sidebar shows for the flow being edited: the pipeline JSON that
 * `spawn-red export <flow file>` writes, the problems that would stop it (each with the node to
 * reveal), and the stage graph. The same functions as the CLI (exportPipeline, pipelineGraph),
 * called through an admin route, so the sidebar and the launcher can never disagree.
 */

export interface LocatedProblem extends Problem {
  /** The problem as the CLI prints it. */
  text: string;
  /** The node the problem is about (a transport or stage node), when one can be named. */
  nodeId?: string;
  /** The tab the problem is about, when it is a tab rather than a node. */
  tabId?: string;
}

export interface FlowAnalysis {
  /** The flow file name the pipeline id comes from, as `spawn-red export` would be given it. */
  fileName: string;
  pipeline: SpawnPipeline;
  /** `spawn-red export`'s output text (it prints nothing but the problems when there are any). */
  json: string;
  problems: LocatedProblem[];
  graph: PipelineGraph;
  /** Stage id → the stage node declaring it, so the graph's boxes can reveal it. */
  stageNodes: Record<string, string>;
}

/**
 * Where-strings (as validate writes them) → the node or tab they name. Validate names places in
 * words for people; this rebuilds the same words from the flow to find the ids again, so
 * validate.ts needs no change.
 */
function placesOf(view: FlowView): Map<string, { nodeId?: string; tabId?: string }> {
  const places = new Map<string, { nodeId?: string; tabId?: string }>();
  const put = (where: string, place: { nodeId?: string; tabId?: string }) => {
    if (!places.has(where)) places.set(where, place);
  };
  for (const link of view.links) {
    if (!link.node) continue;
    const kind = link.protocol === 'rdma' ? (link.side === 'output' ? 'rdma out' : 'efa in') : link.pattern!;
    put(`${tabWhere(view, link.tabId)}, ${nodeWhere(link.node, kind)}`, { nodeId: link.node.id, tabId: link.tabId });
  }
  for (const stage of view.model.stages) {
    put(stageWhere(stage), { nodeId: stage.nodeId, tabId: stage.tabId });
    // spawn's pipeline rules name a stage by its id only.
    put(`stage "${stage.stageId}"`, { nodeId: stage.nodeId, tabId: stage.tabId });
  }
  for (const extra of view.model.extraStageNodes) put(`${tabWhere(view, extra.tabId)}, stage node ${extra.nodeId}`, { nodeId: extra.nodeId, tabId: extra.tabId });
  for (const t of view.subflowTransports) put(`subflow "${t.subflow}", ${t.label}`, { nodeId: t.node.id });
  for (const tabId of view.tabOrder) {
    // A tab without a stage node: reveal its first transport node, where the stage node belongs.
    const first = view.links.find((l) => l.tabId === tabId && l.node);
    put(tabWhere(view, tabId), { nodeId: first?.node?.id, tabId });
  }
  return places;
}

export function analyseFlow(flow: unknown[], fileName = 'flows.json'): FlowAnalysis {
  const base = path.basename(fileName);
  const { pipeline, problems } = exportPipeline(flow, { fileName: base });
  const view = readFlowView(flow);
  const places = placesOf(view);
  const stageNodes: Record<string, string> = {};
  for (const s of view.model.stages) if (!(s.stageId in stageNodes)) stageNodes[s.stageId] = s.nodeId;
  return {
    fileName: base,
    pipeline,
    json: pipelineJson(pipeline),
    problems: problems.map((p) => ({ ...p, text: formatProblem(p), ...places.get(p.where) })),
    graph: pipelineGraph(pipeline),
    stageNodes,
  };
}
