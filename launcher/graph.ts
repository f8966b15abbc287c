import { InputPattern, isInputPattern, isOutputPattern, OutputPattern, SOURCE_PATTERN } from '../nodes/common/pipeline';
import { topoOrder } from './dag';
import { selectForStages } from '../native/transport-select';

/**
 * The stage DAG of a spawn pipeline definition (a flow is graphed through its export): stages in
 * dependency order, and the streams between them, read from each stage's data_input (its
 * source_stage, source_stages, or data_inputs) with the pattern and port of the source's
 * data_output(s). Tolerant: it draws what it can of an invalid pipeline.
 */

export interface GraphStage {
  stage_id: string;
  instance_count: number;
  instance_type: string;
  command: string;
}

export interface GraphEdge {
  from: string;
  to: string;
  protocol: string;
  /** The pattern pair, output side first (`push/pull`, `pub/sub`, `router/dealer`); null where the stream has none (RDMA). */
  pattern: string | null;
  /** The source's port, null where the source declares no matching output. */
  port: number | null;
  /** Pattern nodes' transport when not ZeroMQ TCP: `quic`, or `auto→…` with what it resolves to. */
  transport?: string;
}

export interface PipelineGraph {
  stages: GraphStage[];
  edges: GraphEdge[];
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => !!v && typeof v === 'object' && !Array.isArray(v);
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const text = (v: unknown): string => (typeof v === 'string' ? v : '');

const INPUT_FOR: Record<OutputPattern, InputPattern> = { push: 'pull', pub: 'sub', router: 'dealer' };

function streamConfigs(stage: Json, single: string, many: string): Json[] {
  const list = Array.isArray(stage[many]) && (stage[many] as unknown[]).length ? (stage[many] as unknown[]) : [stage[single]];
  return list.filter(isObject).filter((d) => d.mode === 'stream');
}

export function pipelineGraph(pipeline: unknown): PipelineGraph {
  const byId = new Map<string, Json>();
  const all = isObject(pipeline) && Array.isArray(pipeline.stages) ? pipeline.stages : [];
  for (const s of all) if (isObject(s) && typeof s.stage_id === 'string' && s.stage_id && !byId.has(s.stage_id)) byId.set(s.stage_id, s);
  const { order } = topoOrder([...byId.keys()], (id) => strings(byId.get(id)!.depends_on));

  const stages: GraphStage[] = order.map((id) => {
    const s = byId.get(id)!;
    return { stage_id: id, instance_count: typeof s.instance_count === 'number' ? s.instance_count : 0, instance_type: text(s.instance_type), command: text(s.command) };
  });

  const edges: GraphEdge[] = [];
  const seen = new Set<string>();
  for (const id of order) {
    for (const input of streamConfigs(byId.get(id)!, 'data_input', 'data_inputs')) {
      const sources = [...new Set([text(input.source_stage), ...strings(input.source_stages)].filter(Boolean))];
      for (const from of sources) {
        const source = byId.get(from);
        if (!source) continue;
        const protocol = text(input.protocol);
        const inPattern = text(input.pattern);
        const outputs = streamConfigs(source, 'data_output', 'data_outputs').filter((o) => !protocol || !o.protocol || o.protocol === protocol);
        const want = isInputPattern(inPattern) ? SOURCE_PATTERN[inPattern] : undefined;
        const match = outputs.find((o) => want !== undefined && o.pattern === want) ?? outputs.find((o) => !o.pattern) ?? outputs[0];
        const outPattern = text(match?.pattern) || want || '';
        const inSide = inPattern || (isOutputPattern(outPattern) ? INPUT_FOR[outPattern] : '');
        const pattern = outPattern && inSide ? `${outPattern}/${inSide}` : outPattern || inSide || null;
        const edge: GraphEdge = {
          from,
          to: id,
          protocol: protocol || text(match?.protocol),
          pattern,
          port: typeof match?.port === 'number' ? match.port : null,
        };
        const transport = edgeTransport(text(input.transport) || text(match?.transport), source, byId.get(id)!);
        if (transport) edge.transport = transport;
        const key = JSON.stringify(edge);
        if (!seen.has(key)) {
          seen.add(key);
          edges.push(edge);
        }
      }
    }
  }
  return { stages, edges };
}

/** `quic`, or for `auto` what the guide's table gives for the two stages (see native/transport-select.ts). */
function edgeTransport(transport: string, from: Json, to: Json): string | undefined {
  if (transport === 'quic') return 'quic';
  if (transport !== 'auto') return undefined;
  const place = (s: Json) => ({ region: text(s.region) || undefined, placement_group: text(s.placement_group) || undefined, efa_enabled: s.efa_enabled === true });
  const sel = selectForStages(place(from), place(to));
  return `auto→${sel.transport} (${sel.why})`;
}

const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

export function graphSummary(g: PipelineGraph): string {
  return `${count(g.stages.length, 'stage')}, ${count(g.edges.length, 'edge')}`;
}

/** One line per stream, e.g. `producer ──zmq push→pull :5555──▶ consumer`. */
export function edgeLine(e: GraphEdge): string {
  const label = [e.protocol, e.pattern?.replace('/', '→'), e.port !== null ? `:${e.port}` : '', e.transport ? `[${e.transport}]` : ''].filter(Boolean).join(' ');
  return `${e.from} ──${label}──▶ ${e.to}`;
}

export function renderGraph(g: PipelineGraph, title: string): string {
  const width = Math.max(0, ...g.stages.map((s) => s.stage_id.length));
  const lines = [`${title}: ${graphSummary(g)}`, '', 'stages (dependencies first):'];
  for (const s of g.stages) lines.push(`  ${s.stage_id.padEnd(width)}  (${s.instance_count} × ${s.instance_type || '?'})  ${s.command}`.trimEnd());
  lines.push('', 'edges:');
  if (g.edges.length === 0) lines.push('  (none)');
  for (const e of g.edges) lines.push(`  ${edgeLine(e)}`);
  return `${lines.join('\n')}\n`;
}
