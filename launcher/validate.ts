import { isInputPattern, isOutputPattern, Stage, STAGE_TYPE, stageById, TRANSPORT_TYPES } from '../nodes/common/pipeline';
import { topoOrder } from './dag';
import { dependenciesOf, FlowView, Link, matchOutput, nodeWhere, RDMA_IN_TYPES, RDMA_OUT_TYPES, readFlowView, stagesInTabOrder } from './edges';
import { parseGoDuration } from './go-duration';

/**
 * Validation of a Node-RED flow (as a pipeline of stages) and of a spawn pipeline definition.
 * Pure functions: data in, problems out. A problem names where (tab, stage, node), the field
 * and what is wrong: `tab "consumer", pull "from producer" (node 3f2a…): source stage: stage
 * "prodcer" does not exist`.
 *
 * The pipeline rules are spawn's own (its Go validator), except that a stream protocol may also be
 * the guide's "quic" or "rdma", and a stream `pattern`, when given, must be a ZeroMQ pattern.
 */

export interface Problem {
  /** `tab "consumer", pull "from producer" (node 3f2a)`, `stage "consumer"`, `pipeline`, `flows.json`. */
  where: string;
  /** The field at fault, as the editor or the JSON names it (`source stage`, `data_input.source_stage`); may be empty. */
  field: string;
  message: string;
}

const setting = (v: unknown, fallback: string): string => (typeof v === 'string' && v.trim() ? v.trim() : fallback);

export function formatProblem(p: Problem): string {
  return [p.where, p.field, p.message].filter(Boolean).join(': ');
}

/** The stage fields export computes; a stage node's `extra` may add others, never these. */
export const COMPUTED_STAGE_FIELDS: readonly string[] = [
  'stage_id',
  'instance_type',
  'instance_count',
  'region',
  'ami',
  'spot',
  'timeout',
  'command',
  'depends_on',
  'data_input',
  'data_inputs',
  'data_output',
  'data_outputs',
  'env',
  'placement_group',
  'efa_enabled',
];

export const STREAM_PROTOCOLS: readonly string[] = ['tcp', 'grpc', 'zmq', 'quic', 'rdma'];
export const STREAM_PATTERNS: readonly string[] = ['push', 'pull', 'pub', 'sub', 'router', 'dealer'];

/** Stage ids as the editor accepts them: they become DNS labels and environment variable names. */
export const STAGE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Node types an external program's tab may hold besides its stage node. */
const INERT_TYPES = ['comment', 'group', STAGE_TYPE];

const show = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v) : v === undefined ? 'nothing' : JSON.stringify(v) ?? String(v));
const list = (items: string[], max = 5): string => (items.length <= max ? items.join(', ') : `${items.slice(0, max).join(', ')} and ${items.length - max} more`);
const validPort = (p: unknown): boolean => typeof p === 'number' && Number.isInteger(p) && p >= 1 && p <= 65535;

// ---------------------------------------------------------------------------------------------
// Flows

export function tabWhere(view: FlowView, tabId: string): string {
  return `tab "${view.model.tabs.get(tabId) ?? tabId}"`;
}

export function stageWhere(stage: Stage): string {
  return `tab "${stage.tabLabel}", stage "${stage.stageId}"`;
}

/** A node's kind in messages: the palette label for the spawn nodes, else the type. */
function kindOf(type: string): string {
  if (TRANSPORT_TYPES[type]) return TRANSPORT_TYPES[type];
  if (RDMA_OUT_TYPES.includes(type)) return 'rdma out';
  if (RDMA_IN_TYPES.includes(type)) return 'efa in';
  return type;
}

function linkWhere(view: FlowView, link: Link, stage: Stage | undefined): string {
  if (!link.node) return stageWhere(stage!);
  const kind = link.protocol === 'rdma' ? (link.side === 'output' ? 'rdma out' : 'efa in') : link.pattern!;
  return `${tabWhere(view, link.tabId)}, ${nodeWhere(link.node, kind)}`;
}

/** Problems of a flow as a pipeline (see flowProblems). */
export function validateFlow(flow: unknown): Problem[] {
  if (!Array.isArray(flow)) return [{ where: 'flow', field: '', message: 'is not a Node-RED flow (an array of nodes)' }];
  return flowProblems(readFlowView(flow));
}

export function flowProblems(view: FlowView): Problem[] {
  const problems: Problem[] = [];
  const add = (where: string, field: string, message: string) => problems.push({ where, field, message });
  const { model } = view;
  const nodesById = new Map(view.flow.map((n) => [n.id, n]));

  for (const i of view.notNodes) add(`flow[${i}]`, '', 'is not a Node-RED node (an object with "id" and "type")');
  if (model.stages.length === 0) add('flow', 'stage', 'no tab has a stage node: add a stage node to each tab that is a pipeline stage');

  // Tabs with stream nodes but no stage node.
  for (const tabId of view.tabOrder) {
    if (model.stages.some((s) => s.tabId === tabId)) continue;
    const nodes = view.links.filter((l) => l.tabId === tabId && l.node);
    if (nodes.length) add(tabWhere(view, tabId), 'stage', `has transport nodes (${list(nodes.map((l) => l.label))}) but no stage node: add a stage node to make the tab a stage`);
  }
  for (const extra of model.extraStageNodes) {
    const first = model.stages.find((s) => s.tabId === extra.tabId)!;
    add(`${tabWhere(view, extra.tabId)}, stage node ${extra.nodeId}`, 'stage', `the tab already has a stage node (stage "${first.stageId}", node ${first.nodeId}); a tab declares one stage`);
  }

  // Stage nodes.
  for (const [i, stage] of model.stages.entries()) {
    const where = stageWhere(stage);
    const node = nodesById.get(stage.nodeId)!;
    const earlier = model.stages.slice(0, i).find((s) => s.stageId === stage.stageId);
    if (earlier) add(where, 'stage id', `stage "${stage.stageId}" is also declared on tab "${earlier.tabLabel}"; stage ids must be unique`);
    if (!STAGE_ID.test(stage.stageId)) add(where, 'stage id', 'may hold only letters, digits, "-" and "_", and starts with a letter or digit');
    for (const name of Object.keys(stage.env)) if (!ENV_NAME.test(name)) add(where, 'env', `"${name}" is not an environment variable name`);
    if (!Number.isInteger(stage.instanceCount) || stage.instanceCount < 1) {
      add(where, 'instance count', `must be a whole number of at least 1, got ${show(node.instanceCount)}`);
    }
    if (stage.timeout) {
      const d = parseGoDuration(stage.timeout);
      if (!d.ok) add(where, 'timeout', `${d.reason}: use a Go duration such as 30m, 1h or 1h30m`);
    }
    const extra = node.extra;
    if (typeof extra === 'string' && extra.trim()) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(extra);
      } catch (e) {
        parsed = e;
      }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed) || parsed instanceof Error) {
        add(where, 'extra', `is not a JSON object${parsed instanceof Error ? ` (${parsed.message})` : ''}`);
      }
    } else if (extra !== undefined && extra !== null && extra !== '' && (typeof extra !== 'object' || Array.isArray(extra))) {
      add(where, 'extra', 'is not a JSON object');
    }
    for (const key of Object.keys(stage.extra)) {
      if (COMPUTED_STAGE_FIELDS.includes(key)) add(where, 'extra', `extra field "${key}" overrides a computed field`);
    }
    if (stage.command) {
      const others = view.flow.filter((n) => n.z === stage.tabId && !INERT_TYPES.includes(n.type));
      if (others.length) {
        add(where, 'command', `an external program's tab holds only its stage node (and comments): move or delete ${list(others.map((n) => nodeWhere(n, kindOf(n.type))))}`);
      }
      const outPattern = typeof node.outPattern === 'string' ? node.outPattern.trim() : '';
      const inPattern = typeof node.inPattern === 'string' ? node.inPattern.trim() : '';
      if (outPattern && !isOutputPattern(outPattern)) add(where, 'output pattern', `"${outPattern}" is not an output pattern (push, pub or router)`);
      if (inPattern && !isInputPattern(inPattern)) add(where, 'input pattern', `"${inPattern}" is not an input pattern (pull, sub or dealer)`);
    }
  }

  // Stream ends.
  const boundPorts = new Map<string, Link>();
  for (const link of view.links) {
    const stage = model.stages.find((s) => s.tabId === link.tabId);
    if (stage?.command && link.node) continue; // reported above: the tab does not run
    if (!stage && !link.node) continue;
    const where = linkWhere(view, link, stage);
    const declared = !link.node;
    if (link.binds) {
      if (!validPort(link.port)) {
        add(where, declared ? 'output port' : 'port', `must be a whole number from 1 to 65535, got ${show(link.rawPort)}`);
        continue;
      }
      const key = `${link.tabId}:${link.port}`;
      const other = boundPorts.get(key);
      if (other) add(where, declared ? 'output port' : 'port', `port ${link.port} is also bound by ${other.node ? nodeWhere(other.node, other.protocol === 'rdma' ? 'rdma out' : other.pattern!) : 'the declared output'} on this tab`);
      else boundPorts.set(key, link);
      continue;
    }
    if (link.side === 'output') {
      if (link.endpoints.length === 0) add(where, 'endpoints', 'connects but names no endpoints to connect to');
      continue;
    }
    const field = declared ? 'input sources' : 'source stage';
    const kind = link.protocol === 'rdma' ? 'efa in' : link.pattern!;
    if (link.sources.length === 0) {
      if (declared) add(where, field, 'names no source stage: list the stages the program reads from');
      else if (link.endpoints.length === 0) add(where, field, `names neither a source stage nor endpoints: pick the stage this ${kind} reads from`);
      continue;
    }
    for (const sourceId of link.sources) {
      const source = stageById(model, sourceId);
      if (!source) {
        const disabled = view.disabledStageIds.get(sourceId);
        const known = model.stages.map((s) => s.stageId);
        add(where, field, disabled ? `stage "${sourceId}" is not in the pipeline: ${disabled}` : `stage "${sourceId}" does not exist (stages: ${known.join(', ') || 'none'})`);
        continue;
      }
      const m = matchOutput(view, link, source);
      if (!m.ok) {
        const what = link.protocol === 'rdma' ? 'rdma out' : `${m.want} output`;
        if (m.candidates.length === 0) add(where, field, `stage "${sourceId}" has no ${what} for this ${kind} to read from`);
        else add(where, field, `stage "${sourceId}" has ${m.candidates.length} ${what}s (ports ${m.candidates.map((c) => c.port).join(', ')}); a source stage must have exactly one`);
        continue;
      }
      if (link.protocol === 'rdma') {
        // An rdma out refuses an efa in of the other delivery mode at run time: say so before.
        const [mine, theirs] = [link.node, m.output.node].map((n) => setting(n?.delivery, 'at-most-once'));
        if (link.node && m.output.node && mine !== theirs) {
          add(where, 'delivery', `is ${mine} but reads from ${nodeWhere(m.output.node, 'rdma out')} of stage "${sourceId}", which is ${theirs}: both ends of a stream must match`);
        }
        continue;
      }
      if (link.protocol !== 'zmq') continue;
      const tIn = transportName(link.node);
      const tOut = transportName(m.output.node);
      if (link.node && m.output.node && tIn !== tOut) {
        add(where, 'transport', `uses transport ${tIn} but reads from stage "${sourceId}" whose ${m.output.label} uses ${tOut}: both ends of a stream need the same transport (tcp, quic, or auto on both)`);
      }
      if (link.node && source.command && link.format !== 'raw') {
        add(where, 'format', `reads from external program "${sourceId}": set Format to raw`);
      }
      if (declared && m.output.node && m.output.format !== 'raw') {
        add(linkWhere(view, m.output, source), 'format', `is read by external program "${stage!.stageId}": set Format to raw`);
      }
      // Exactly-once and CurveZMQ change the sockets underneath: both ends must agree, or the
      // ZeroMQ handshake fails at run time (over QUIC, the greeting refuses the other delivery mode).
      if (link.node && m.output.node) {
        for (const [field, fallback] of [['delivery', 'at-most-once'], ['encryption', 'none']] as const) {
          const mine = setting(link.node[field], fallback);
          const theirs = setting(m.output.node[field], fallback);
          if (mine !== theirs) {
            add(where, field, `is ${mine} but reads from ${nodeWhere(m.output.node, m.output.pattern!)} of stage "${sourceId}", which is ${theirs}: both ends of a stream must match`);
          }
        }
      }
    }
  }

  for (const t of view.subflowTransports) {
    add(`subflow "${t.subflow}", ${t.label}`, '', 'transport nodes inside a subflow are not part of any stage: place the node on the stage\'s tab');
  }

  const order = stageOrder(view);
  if (order.cycle) {
    const first = order.cycle[0];
    add(stageWhere(first), 'source stage', `stages read from each other in a cycle: ${order.cycle.map((s) => s.stageId).join(' → ')}; spawn needs the stages to form a DAG`);
  }
  return problems;
}

/** Stages in dependency order, ties broken by tab order; a cycle (in data-flow direction) if there is one. */
export function stageOrder(view: FlowView): { order: Stage[]; cycle?: Stage[] } {
  const stages = stagesInTabOrder(view);
  const byNode = new Map(stages.map((s) => [s.nodeId, s]));
  const { order, cycle } = topoOrder(
    stages.map((s) => s.nodeId),
    (nodeId) =>
      dependenciesOf(view, byNode.get(nodeId)!)
        .map((id) => stageById(view.model, id)?.nodeId)
        .filter((id): id is string => id !== undefined),
  );
  return { order: order.map((id) => byNode.get(id)!), cycle: cycle?.map((id) => byNode.get(id)!) };
}

// ---------------------------------------------------------------------------------------------
// Pipelines

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => !!v && typeof v === 'object' && !Array.isArray(v);
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** Problems of a spawn pipeline definition: spawn's validator, all problems at once. */
export function validatePipeline(obj: unknown): Problem[] {
  const problems: Problem[] = [];
  const add = (where: string, field: string, message: string) => problems.push({ where, field, message });
  if (!isObject(obj)) return [{ where: 'pipeline', field: '', message: 'is not a JSON object' }];
  const P = 'pipeline';
  for (const f of ['pipeline_id', 'pipeline_name', 's3_bucket']) {
    if (obj[f] === undefined || obj[f] === '') add(P, f, 'is required');
    else if (typeof obj[f] !== 'string') add(P, f, `must be a string, got ${show(obj[f])}`);
  }
  for (const f of ['s3_prefix', 'result_s3_bucket', 'result_s3_prefix', 'notification_email']) {
    if (obj[f] !== undefined && typeof obj[f] !== 'string') add(P, f, `must be a string, got ${show(obj[f])}`);
  }
  if (obj.max_cost_usd !== undefined && obj.max_cost_usd !== null && typeof obj.max_cost_usd !== 'number') add(P, 'max_cost_usd', `must be a number, got ${show(obj.max_cost_usd)}`);
  if (obj.on_failure !== undefined && !['', 'stop', 'continue'].includes(obj.on_failure as string)) {
    add(P, 'on_failure', `must be "stop" or "continue", got ${show(obj.on_failure)}`);
  }
  if (!Array.isArray(obj.stages)) {
    add(P, 'stages', obj.stages === undefined ? 'at least one stage is required' : `must be an array of stages, got ${show(obj.stages)}`);
    return problems;
  }
  if (obj.stages.length === 0) add(P, 'stages', 'at least one stage is required');

  const stages = obj.stages as unknown[];
  const ids = new Map<string, number>();
  const whereOf = (s: unknown, i: number) => (isObject(s) && typeof s.stage_id === 'string' && s.stage_id ? `stage "${s.stage_id}"` : `stage #${i + 1}`);
  stages.forEach((s, i) => {
    if (!isObject(s)) return;
    if (typeof s.stage_id === 'string' && s.stage_id) {
      const first = ids.get(s.stage_id);
      if (first !== undefined) add(whereOf(s, i), 'stage_id', `"${s.stage_id}" is used by stages #${first + 1} and #${i + 1}; stage ids must be unique`);
      else ids.set(s.stage_id, i);
    }
  });
  const exists = (id: unknown) => typeof id === 'string' && ids.has(id);

  stages.forEach((s, i) => {
    const where = whereOf(s, i);
    if (!isObject(s)) {
      add(where, '', 'must be an object');
      return;
    }
    if (s.stage_id === undefined || s.stage_id === '') add(where, 'stage_id', 'is required');
    else if (typeof s.stage_id !== 'string') add(where, 'stage_id', `must be a string, got ${show(s.stage_id)}`);
    for (const f of ['instance_type', 'command']) {
      if (s[f] === undefined || s[f] === '') add(where, f, 'is required');
      else if (typeof s[f] !== 'string') add(where, f, `must be a string, got ${show(s[f])}`);
    }
    if (s.instance_count === undefined) add(where, 'instance_count', 'is required (a whole number >= 1)');
    else if (typeof s.instance_count !== 'number' || !Number.isInteger(s.instance_count) || s.instance_count < 1) {
      add(where, 'instance_count', `must be a whole number >= 1, got ${show(s.instance_count)}`);
    }
    for (const f of ['region', 'ami', 'timeout', 'placement_group']) {
      if (s[f] !== undefined && typeof s[f] !== 'string') add(where, f, `must be a string, got ${show(s[f])}`);
    }
    for (const f of ['spot', 'efa_enabled']) {
      if (s[f] !== undefined && typeof s[f] !== 'boolean') add(where, f, `must be true or false, got ${show(s[f])}`);
    }
    if (typeof s.timeout === 'string' && s.timeout !== '') {
      const d = parseGoDuration(s.timeout);
      if (!d.ok) add(where, 'timeout', `${d.reason}: use a Go duration such as 30m, 1h or 1h30m`);
    }
    if (s.depends_on !== undefined && s.depends_on !== null) {
      if (!isStringArray(s.depends_on)) add(where, 'depends_on', `must be an array of stage ids, got ${show(s.depends_on)}`);
      else for (const d of s.depends_on) if (!exists(d)) add(where, 'depends_on', `stage "${d}" does not exist`);
    }
    if (s.env !== undefined && s.env !== null) {
      if (!isObject(s.env)) add(where, 'env', `must be an object of names to strings, got ${show(s.env)}`);
      else for (const [k, v] of Object.entries(s.env)) if (typeof v !== 'string') add(where, `env.${k}`, `must be a string, got ${show(v)}`);
    }
    const data = (field: string, side: 'input' | 'output') => {
      const v = s[field];
      if (v === undefined || v === null) return;
      dataConfigProblems(v, side, field, exists).forEach(([f, m]) => add(where, f, m));
    };
    data('data_input', 'input');
    data('data_output', 'output');
    for (const [field, side] of [['data_inputs', 'input'], ['data_outputs', 'output']] as const) {
      const v = s[field];
      if (v === undefined || v === null) continue;
      if (!Array.isArray(v)) add(where, field, `must be an array, got ${show(v)}`);
      else v.forEach((d, k) => dataConfigProblems(d, side, `${field}[${k}]`, exists).forEach(([f, m]) => add(where, f, m)));
    }
  });

  const valid = stages.filter(isObject).filter((s) => typeof s.stage_id === 'string' && s.stage_id);
  const { cycle } = topoOrder(
    valid.map((s) => s.stage_id as string),
    (id) => {
      const deps = valid.find((s) => s.stage_id === id)!.depends_on;
      return isStringArray(deps) ? deps : [];
    },
  );
  if (cycle) add(P, 'depends_on', `stages depend on each other in a cycle: ${cycle.join(' → ')}`);
  return problems;
}

function dataConfigProblems(d: unknown, side: 'input' | 'output', field: string, exists: (id: unknown) => boolean): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const add = (f: string, m: string) => out.push([f ? `${field}.${f}` : field, m]);
  if (!isObject(d)) {
    add('', `must be an object, got ${show(d)}`);
    return out;
  }
  if (d.mode !== 's3' && d.mode !== 'stream') {
    add('mode', `must be "s3" or "stream", got ${show(d.mode)}`);
    return out;
  }
  if (d.source_stage !== undefined && typeof d.source_stage !== 'string') add('source_stage', `must be a string, got ${show(d.source_stage)}`);
  if (d.source_stages !== undefined && !isStringArray(d.source_stages)) add('source_stages', `must be an array of stage ids, got ${show(d.source_stages)}`);
  const sources = (): void => {
    if (typeof d.source_stage === 'string' && d.source_stage && !exists(d.source_stage)) add('source_stage', `stage "${d.source_stage}" does not exist`);
    if (isStringArray(d.source_stages)) for (const s of d.source_stages) if (!exists(s)) add('source_stages', `stage "${s}" does not exist`);
  };
  if (d.mode === 's3') {
    if (side === 'input') {
      if (!d.source_stage && !(Array.isArray(d.source_stages) && d.source_stages.length)) add('', 's3 mode requires source_stage or source_stages');
      sources();
    } else if (!Array.isArray(d.paths) || d.paths.length === 0) add('paths', 's3 mode requires at least one path');
    return out;
  }
  if (d.protocol === undefined || d.protocol === '') add('protocol', `is required in stream mode (${STREAM_PROTOCOLS.join(', ')})`);
  else if (!STREAM_PROTOCOLS.includes(d.protocol as string)) add('protocol', `must be one of ${STREAM_PROTOCOLS.join(', ')}, got ${show(d.protocol)}`);
  if (d.pattern !== undefined && !STREAM_PATTERNS.includes(d.pattern as string)) add('pattern', `must be one of ${STREAM_PATTERNS.join(', ')}, got ${show(d.pattern)}`);
  if (side === 'input') {
    if (d.source_stage === undefined || d.source_stage === '') add('source_stage', 'is required in stream mode');
    sources();
  } else if (d.port === undefined) add('port', 'is required in stream mode (1-65535)');
  else if (!validPort(d.port)) add('port', `must be 1-65535, got ${show(d.port)}`);
  return out;
}

/** A pattern node's transport option ('' and absent mean tcp). */
function transportName(node: object | undefined): string {
  const t = (node as { transport?: unknown } | undefined)?.transport;
  return t === 'quic' || t === 'auto' ? t : 'tcp';
}
