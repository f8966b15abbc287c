import {
  FlowModel,
  FlowNode,
  InputPattern,
  isInputPattern,
  nodeLabel,
  OutputPattern,
  Pattern,
  readFlow,
  safeStageId,
  SOURCE_PATTERN,
  Stage,
  STAGE_TYPE,
  stageById,
  TRANSPORT_TYPES,
} from '../nodes/common/pipeline';

/**
 * The streams of a flow as the launcher sees them, on top of nodes/common/pipeline.ts: which tabs
 * and nodes count (disabled nodes and tabs do not), every stream end on a stage's tab (the ZeroMQ
 * pattern nodes, the RDMA nodes, an external program's declared endpoints), and the edges
 * between stages they make. Used by export, validate and graph.
 */

export type Protocol = 'zmq' | 'rdma';

/** RDMA node types ("rdma out" binds and advertises its fabric address, "efa in" connects to it). */
export const RDMA_OUT_TYPES: readonly string[] = ['spawn-rdma-out', 'spawn rdma out'];
export const RDMA_IN_TYPES: readonly string[] = ['spawn-efa-in', 'spawn efa in'];
/** The port an "rdma out" advertises on when its node gives none (the guide's example port). */
export const DEFAULT_RDMA_PORT = 7500;

/** One end of a stream: a transport node on a tab, or an external program's declared endpoint. */
export interface Link {
  tabId: string;
  /** The transport node; absent for an external program's declared endpoint. */
  node?: FlowNode;
  /** `push "name"`, `pull 1a2b3c`, `rdma out "x"`; for a declared endpoint `declared output`. */
  label: string;
  side: 'output' | 'input';
  protocol: Protocol;
  /** The ZeroMQ pattern; RDMA has none. */
  pattern?: Pattern;
  binds: boolean;
  /** Binding ends: the port. */
  port?: number;
  /** The raw port value as stored, for messages. */
  rawPort?: unknown;
  /** Connecting input ends: the source stages named (a node names one, an external program several). */
  sources: string[];
  endpoints: string[];
  format: 'spawn' | 'raw';
}

export interface FlowView {
  /** The nodes that count: enabled tabs, and the enabled nodes on them (and config nodes). */
  flow: FlowNode[];
  model: FlowModel;
  /** Enabled tab ids, in flow order. */
  tabOrder: string[];
  /** Every stream end on an enabled tab, in flow order (nodes), then the external programs' declared ends. */
  links: Link[];
  /** Transport nodes inside subflow definitions (the launcher cannot place them on a stage). */
  subflowTransports: Array<{ node: FlowNode; subflow: string; label: string }>;
  /** Stage ids declared on disabled tabs or by disabled stage nodes, for messages. */
  disabledStageIds: Map<string, string>;
  /** Items of the flow array that are not nodes (no string id and type). */
  notNodes: number[];
}

const str = (v: unknown): string => (typeof v === 'string' ? v.trim() : v === undefined || v === null ? '' : String(v));
const split = (v: unknown): string[] => str(v).split(/[\s,]+/).filter(Boolean);

export function isNode(n: unknown): n is FlowNode {
  return !!n && typeof n === 'object' && !Array.isArray(n) && typeof (n as FlowNode).id === 'string' && typeof (n as FlowNode).type === 'string';
}

export function isTransportType(type: string): boolean {
  return TRANSPORT_TYPES[type] !== undefined || RDMA_OUT_TYPES.includes(type) || RDMA_IN_TYPES.includes(type);
}

/** How a node is named in messages: `push "name" (node 1a2b)` or `push 1a2b`. */
export function nodeWhere(n: FlowNode, kind: string): string {
  const label = nodeLabel(n, kind);
  return n.name ? `${label} (node ${n.id})` : label;
}

function rdmaLink(n: FlowNode, side: 'output' | 'input'): Link {
  const connection = str(n.connection);
  const binds = connection === 'bind' ? true : connection === 'connect' ? false : side === 'output';
  const rawPort = n.port;
  return {
    tabId: n.z ?? '',
    node: n,
    label: nodeLabel(n, side === 'output' ? 'rdma out' : 'efa in'),
    side,
    protocol: 'rdma',
    binds,
    port: binds ? (rawPort === undefined || rawPort === null || rawPort === '' ? DEFAULT_RDMA_PORT : Number(rawPort)) : undefined,
    rawPort,
    sources: !binds && str(n.sourceStage) ? [str(n.sourceStage)] : [],
    endpoints: split(n.endpoints),
    format: n.format === 'raw' ? 'raw' : 'spawn',
  };
}

/** Read a flow for the launcher: drops what Node-RED would not run, then reads the stages and stream ends. */
export function readFlowView(input: unknown[]): FlowView {
  const notNodes: number[] = [];
  const all: FlowNode[] = [];
  input.forEach((n, i) => (isNode(n) ? all.push(n) : notNodes.push(i)));
  const tabs = new Map<string, FlowNode>();
  const subflows = new Map<string, FlowNode>();
  for (const n of all) {
    if (n.type === 'tab') tabs.set(n.id, n);
    else if (n.type === 'subflow') subflows.set(n.id, n);
  }
  const disabledTabs = new Set([...tabs.values()].filter((t) => t.disabled === true).map((t) => t.id));
  const flow: FlowNode[] = [];
  const subflowTransports: FlowView['subflowTransports'] = [];
  const disabledStageIds = new Map<string, string>();
  for (const n of all) {
    if (n.type === 'tab') {
      if (!disabledTabs.has(n.id)) flow.push(n);
      continue;
    }
    const z = n.z;
    if (n.type === STAGE_TYPE && (n.d === true || (z !== undefined && disabledTabs.has(z)))) {
      const label = z !== undefined ? str(tabs.get(z)?.label) || z : '';
      const why = z !== undefined && disabledTabs.has(z) ? `its tab "${label}" is disabled` : `its stage node on tab "${label}" is disabled`;
      disabledStageIds.set(str(n.stageId) || safeStageId(label), why);
    }
    if (n.d === true || (z !== undefined && disabledTabs.has(z))) continue;
    if (z !== undefined && subflows.has(z)) {
      if (isTransportType(n.type)) {
        const kind = TRANSPORT_TYPES[n.type] ?? (RDMA_OUT_TYPES.includes(n.type) ? 'rdma out' : 'efa in');
        subflowTransports.push({ node: n, subflow: str(subflows.get(z)!.name) || z, label: nodeWhere(n, kind) });
      }
      continue;
    }
    flow.push(n);
  }
  const model = readFlow(flow);
  const transports = new Map(model.transports.map((t) => [t.nodeId, t]));
  const links: Link[] = [];
  for (const n of flow) {
    const t = transports.get(n.id);
    if (t) {
      links.push({
        tabId: t.tabId,
        node: n,
        label: t.label,
        side: t.side,
        protocol: 'zmq',
        pattern: t.pattern,
        binds: t.binds,
        port: t.port,
        rawPort: n.port,
        sources: !t.binds && t.sourceStage ? [t.sourceStage] : [],
        endpoints: t.endpoints,
        format: t.format,
      });
    } else if (RDMA_OUT_TYPES.includes(n.type)) links.push(rdmaLink(n, 'output'));
    else if (RDMA_IN_TYPES.includes(n.type)) links.push(rdmaLink(n, 'input'));
  }
  for (const s of model.stages) {
    const ext = s.external;
    if (ext?.output) {
      const rawPort = flow.find((n) => n.id === s.nodeId)?.outPort;
      links.push({ tabId: s.tabId, label: 'declared output', side: 'output', protocol: 'zmq', pattern: ext.output.pattern, binds: true, port: ext.output.port, rawPort, sources: [], endpoints: [], format: 'raw' });
    }
    if (ext?.input) {
      links.push({ tabId: s.tabId, label: 'declared input', side: 'input', protocol: 'zmq', pattern: ext.input.pattern, binds: false, sources: ext.input.sources, endpoints: [], format: 'raw' });
    }
  }
  const tabOrder = flow.filter((n) => n.type === 'tab').map((n) => n.id);
  return { flow, model, tabOrder, links, subflowTransports, disabledStageIds, notNodes };
}

/** An external program's stage: only its declared endpoints count; its tab runs no Node-RED nodes. */
const ownLinks = (view: FlowView, stage: Stage): Link[] =>
  view.links.filter((l) => l.tabId === stage.tabId && (stage.command ? l.node === undefined : l.node !== undefined));

/** The ends a stage serves: binding output nodes (ZeroMQ, RDMA), or an external program's declared output. */
export function outputsOf(view: FlowView, stage: Stage): Link[] {
  return ownLinks(view, stage).filter((l) => l.side === 'output' && l.binds && l.port !== undefined);
}

/** The ends a stage reads through from other stages: connecting input nodes that name a source stage, or an external program's declared input. */
export function inputsOf(view: FlowView, stage: Stage): Link[] {
  return ownLinks(view, stage).filter((l) => l.side === 'input' && !l.binds && l.sources.length > 0);
}

/** The stages a stage depends on: the distinct source stages of its inputs, first appearance first; reading from itself adds none. */
export function dependenciesOf(view: FlowView, stage: Stage): string[] {
  const out: string[] = [];
  for (const l of inputsOf(view, stage)) for (const s of l.sources) if (s !== stage.stageId && !out.includes(s)) out.push(s);
  return out;
}

export type OutputMatch = { ok: true; output: Link } | { ok: false; want: string; candidates: Link[] };

/** The output of `source` an input end reads from: the matching ZeroMQ pattern (pull ← push, sub ← pub, dealer ← router), or the RDMA output. */
export function matchOutput(view: FlowView, input: Link, source: Stage): OutputMatch {
  const want = input.protocol === 'rdma' ? 'rdma out' : SOURCE_PATTERN[input.pattern as InputPattern];
  const candidates = outputsOf(view, source).filter((o) => o.protocol === input.protocol && (input.protocol === 'rdma' || o.pattern === want));
  return candidates.length === 1 ? { ok: true, output: candidates[0] } : { ok: false, want, candidates };
}

export interface FlowEdge {
  from: string;
  to: string;
  protocol: Protocol;
  outPattern?: OutputPattern;
  inPattern?: InputPattern;
  port: number;
  input: Link;
  output: Link;
}

/** Every stream between stages that resolves to one output, in stage order then input order. */
export function flowEdges(view: FlowView): FlowEdge[] {
  const edges: FlowEdge[] = [];
  for (const stage of view.model.stages) {
    for (const input of inputsOf(view, stage)) {
      for (const sourceId of input.sources) {
        const source = stageById(view.model, sourceId);
        if (!source) continue;
        const m = matchOutput(view, input, source);
        if (!m.ok) continue;
        edges.push({
          from: sourceId,
          to: stage.stageId,
          protocol: input.protocol,
          outPattern: m.output.pattern as OutputPattern | undefined,
          inPattern: input.pattern && isInputPattern(input.pattern) ? input.pattern : undefined,
          port: m.output.port!,
          input,
          output: m.output,
        });
      }
    }
  }
  return edges;
}

/** Whether a stage's tab streams over RDMA (then it needs EFA and a cluster placement group). */
export function usesRdma(view: FlowView, stage: Stage): boolean {
  return ownLinks(view, stage).some((l) => l.protocol === 'rdma');
}

/** The stages in the order of their tabs in the flow. */
export function stagesInTabOrder(view: FlowView): Stage[] {
  const rank = (s: Stage) => {
    const i = view.tabOrder.indexOf(s.tabId);
    return i < 0 ? view.tabOrder.length : i;
  };
  return view.model.stages.map((s, i) => ({ s, i })).sort((a, b) => rank(a.s) - rank(b.s) || a.i - b.i).map((x) => x.s);
}
