/**
 * The pipeline a Node-RED flow describes: each tab with a stage node is a stage; output-side
 * transport nodes (push, pub, router) are its outputs, input-side ones (pull, sub, dealer) name the
 * stage they read from. Used at run time by input nodes to find their source's port, and by the
 * launcher to export, validate and graph the pipeline. Plain data in, plain data out: no runtime.
 */

export type FlowNode = Record<string, unknown> & { id: string; type: string; z?: string };

export type OutputPattern = 'push' | 'pub' | 'router';
export type InputPattern = 'pull' | 'sub' | 'dealer';
export type Pattern = OutputPattern | InputPattern;

export const STAGE_TYPE = 'spawn-stage';

/** Node type → pattern, for the transport nodes. */
export const TRANSPORT_TYPES: Record<string, Pattern> = {
  'spawn-push': 'push',
  'spawn-pub': 'pub',
  'spawn-router': 'router',
  'spawn-pull': 'pull',
  'spawn-sub': 'sub',
  'spawn-dealer': 'dealer',
};

/** The output pattern an input pattern reads from. */
export const SOURCE_PATTERN: Record<InputPattern, OutputPattern> = { pull: 'push', sub: 'pub', dealer: 'router' };
export const OUTPUT_PATTERNS: readonly Pattern[] = ['push', 'pub', 'router'];
export const INPUT_PATTERNS: readonly Pattern[] = ['pull', 'sub', 'dealer'];

export const isOutputPattern = (p: string): p is OutputPattern => (OUTPUT_PATTERNS as readonly string[]).includes(p);
export const isInputPattern = (p: string): p is InputPattern => (INPUT_PATTERNS as readonly string[]).includes(p);

export interface Stage {
  /** The stage node's id, and the tab it declares. */
  nodeId: string;
  tabId: string;
  tabLabel: string;
  stageId: string;
  instanceType: string;
  instanceCount: number;
  region: string;
  ami: string;
  spot: boolean;
  timeout: string;
  placementGroup: string;
  efa: boolean;
  env: Record<string, string>;
  extra: Record<string, unknown>;
  /** An external program's command line; empty for a Node-RED stage. */
  command: string;
  /** An external program's stream endpoints, declared on its stage node. */
  external?: { output?: { pattern: OutputPattern; port: number }; input?: { pattern: InputPattern; sources: string[] } };
}

export interface Transport {
  nodeId: string;
  tabId: string;
  /** How the node is named in messages: `push "name"` or `push 1a2b3c`. */
  label: string;
  pattern: Pattern;
  protocol: 'zmq';
  format: 'spawn' | 'raw';
  /** Output side (push, pub, router) or input side (pull, sub, dealer). */
  side: 'output' | 'input';
  /** Whether the node binds (its role default, unless its Connection setting says otherwise). */
  binds: boolean;
  port?: number;
  sourceStage?: string;
  endpoints: string[];
  /** Node-RED's disabled flag on the node. */
  disabled: boolean;
}

export interface FlowModel {
  stages: Stage[];
  transports: Transport[];
  /** Tab id → label, for every tab. */
  tabs: Map<string, string>;
  /** Stage nodes beyond the first on a tab (each is a problem). */
  extraStageNodes: Array<{ nodeId: string; tabId: string }>;
}

/** A stage id from a tab name: lower case, letters, digits and dashes. */
export function safeStageId(name: string): string {
  const id = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return id || 'stage';
}

const str = (v: unknown, fallback = ''): string => (typeof v === 'string' ? v.trim() : v === undefined || v === null ? fallback : String(v));
const num = (v: unknown, fallback: number): number => (v === undefined || v === null || v === '' ? fallback : Number(v));

function objectOf(v: unknown): Record<string, unknown> {
  if (typeof v === 'string' && v.trim()) {
    try {
      const parsed = JSON.parse(v);
      return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed : {};
    } catch {
      return {};
    }
  }
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function envOf(v: unknown): Record<string, string> {
  // The editor stores a list of {name, value}; a hand-written flow may give an object.
  if (Array.isArray(v)) {
    const out: Record<string, string> = {};
    for (const e of v) if (e && typeof e === 'object' && str((e as { name?: unknown }).name)) out[str((e as { name: unknown }).name)] = str((e as { value?: unknown }).value);
    return out;
  }
  const o = objectOf(v);
  return Object.fromEntries(Object.entries(o).map(([k, val]) => [k, str(val)]));
}

export function nodeLabel(n: FlowNode, pattern: string): string {
  return n.name ? `${pattern} "${str(n.name)}"` : `${pattern} ${n.id}`;
}

function readStage(n: FlowNode, tabLabel: string): Stage {
  const outPattern = str(n.outPattern);
  const inPattern = str(n.inPattern);
  const command = str(n.command);
  const stage: Stage = {
    nodeId: n.id,
    tabId: n.z ?? '',
    tabLabel,
    stageId: str(n.stageId) || safeStageId(tabLabel),
    instanceType: str(n.instanceType, 'c5.xlarge') || 'c5.xlarge',
    instanceCount: num(n.instanceCount, 1),
    region: str(n.region),
    ami: str(n.ami),
    spot: n.spot === true,
    timeout: str(n.timeout),
    placementGroup: str(n.placementGroup),
    efa: n.efa === true,
    env: envOf(n.env),
    extra: objectOf(n.extra),
    command,
  };
  if (command && (isOutputPattern(outPattern) || isInputPattern(inPattern))) {
    stage.external = {};
    if (isOutputPattern(outPattern)) stage.external.output = { pattern: outPattern, port: num(n.outPort, 5555) };
    if (isInputPattern(inPattern)) {
      stage.external.input = {
        pattern: inPattern,
        sources: str(n.inSources)
          .split(/[\s,]+/)
          .filter(Boolean),
      };
    }
  }
  return stage;
}

function readTransport(n: FlowNode, pattern: Pattern): Transport {
  const side = isOutputPattern(pattern) ? 'output' : 'input';
  const connection = str(n.connection);
  const binds = connection === 'bind' ? true : connection === 'connect' ? false : side === 'output';
  return {
    nodeId: n.id,
    tabId: n.z ?? '',
    label: nodeLabel(n, pattern),
    pattern,
    protocol: 'zmq',
    format: n.format === 'raw' ? 'raw' : 'spawn',
    side,
    binds,
    port: binds ? num(n.port, 5555) : undefined,
    sourceStage: str(n.sourceStage) || undefined,
    endpoints: str(n.endpoints)
      .split(/[\s,]+/)
      .filter(Boolean),
    disabled: n.d === true,
  };
}

/** Read a flow (the array Node-RED stores in flows.json). Unknown node types are ignored. */
export function readFlow(flow: FlowNode[]): FlowModel {
  const tabs = new Map<string, string>();
  for (const n of flow) if (n.type === 'tab') tabs.set(n.id, str(n.label) || n.id);
  const stages: Stage[] = [];
  const extraStageNodes: FlowModel['extraStageNodes'] = [];
  const transports: Transport[] = [];
  for (const n of flow) {
    if (n.type === STAGE_TYPE && n.d !== true) {
      const tabId = n.z ?? '';
      if (stages.some((s) => s.tabId === tabId)) extraStageNodes.push({ nodeId: n.id, tabId });
      else stages.push(readStage(n, tabs.get(tabId) ?? tabId));
    } else if (TRANSPORT_TYPES[n.type]) {
      transports.push(readTransport(n, TRANSPORT_TYPES[n.type]));
    }
  }
  return { stages, transports, tabs, extraStageNodes };
}

export function stageById(model: FlowModel, stageId: string): Stage | undefined {
  return model.stages.find((s) => s.stageId === stageId);
}

/** The output-side endpoints of a stage: its binding transport nodes, or an external program's declared output. */
export function stageOutputs(model: FlowModel, stage: Stage): Array<{ pattern: OutputPattern; port: number; transport?: Transport }> {
  if (stage.external?.output) return [{ ...stage.external.output }];
  return model.transports
    .filter((t) => t.tabId === stage.tabId && !t.disabled && t.side === 'output' && t.binds && t.port !== undefined)
    .map((t) => ({ pattern: t.pattern as OutputPattern, port: t.port!, transport: t }));
}

export type SourceResolution = { ok: true; stage: Stage; port: number } | { ok: false; problem: string };

/** Which stage and port an input-side pattern reading from `sourceStage` connects to. */
export function resolveSource(model: FlowModel, pattern: InputPattern, sourceStage: string): SourceResolution {
  const stage = stageById(model, sourceStage);
  if (!stage) {
    const known = model.stages.map((s) => s.stageId).join(', ') || 'none';
    return { ok: false, problem: `source stage "${sourceStage}" does not exist (stages: ${known})` };
  }
  const want = SOURCE_PATTERN[pattern];
  const outputs = stageOutputs(model, stage).filter((o) => o.pattern === want);
  if (outputs.length === 0) return { ok: false, problem: `source stage "${sourceStage}" has no ${want} output for this ${pattern} to read from` };
  if (outputs.length > 1) {
    const ports = outputs.map((o) => o.port).join(', ');
    return { ok: false, problem: `source stage "${sourceStage}" has ${outputs.length} ${want} outputs (ports ${ports}); name one with an explicit endpoint` };
  }
  return { ok: true, stage, port: outputs[0].port };
}
