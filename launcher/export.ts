import * as path from 'path';
import { safeStageId, Stage } from '../nodes/common/pipeline';
import { dependenciesOf, FlowView, inputsOf, Link, outputsOf, readFlowView, usesRdma } from './edges';
import { COMPUTED_STAGE_FIELDS, flowProblems, Problem, stageOrder, validatePipeline } from './validate';

/**
 * Flow → spawn pipeline definition. Each tab with a stage node is a stage (dependencies first,
 * then tab order); its command runs that tab headless (or is the external program's command); its
 * output nodes give data_output, its input nodes with a source stage give data_input and
 * depends_on. A pure function, so the editor can offer the same export through an admin route.
 */

export interface DataConfig {
  mode: 'stream' | 's3';
  source_stage?: string;
  source_stages?: string[];
  protocol?: string;
  pattern?: string;
  port?: number;
  [field: string]: unknown;
}

export interface SpawnStage {
  stage_id: string;
  instance_type: string;
  instance_count: number;
  region?: string;
  ami?: string;
  spot?: boolean;
  timeout?: string;
  command: string;
  depends_on?: string[];
  data_input?: DataConfig;
  data_inputs?: DataConfig[];
  data_output?: DataConfig;
  data_outputs?: DataConfig[];
  env?: Record<string, string>;
  placement_group?: string;
  efa_enabled?: boolean;
  [field: string]: unknown;
}

export interface SpawnPipeline {
  pipeline_id: string;
  pipeline_name: string;
  s3_bucket: string;
  on_failure: 'stop' | 'continue';
  stages: SpawnStage[];
  [field: string]: unknown;
}

export interface ExportOptions {
  /** Default: the flow file's name without extension, made safe like a stage id. */
  pipelineId?: string;
  /** Default: the pipeline id. */
  name?: string;
  /** Default: `spawn-red-<pipeline id>` (spawn requires a bucket even for streaming-only pipelines). */
  s3Bucket?: string;
  /** The flow file's path or name, for the default pipeline id. */
  fileName?: string;
  /** The flow file as the stage commands name it on the instance. Default `flows.json`. */
  flowPath?: string;
}

export interface ExportResult {
  pipeline: SpawnPipeline;
  problems: Problem[];
}

export function defaultPipelineId(fileName: string | undefined): string {
  return fileName ? safeStageId(path.basename(fileName).replace(/\.[^.]*$/, '')) : 'pipeline';
}

const SHELL_SAFE = /^[A-Za-z0-9@%+=:,./_-]+$/;
export const shellQuote = (s: string): string => (SHELL_SAFE.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** The command a stage's instances run: the external program, or headless Node-RED on the stage's tab. */
export function stageCommand(stage: Stage, flowPath = 'flows.json'): string {
  return stage.command || `spawn-red run --flow ${shellQuote(flowPath)} --stage ${shellQuote(stage.stageId)}`;
}

/** A pattern node's transport when it is not the default ZeroMQ TCP (an extra field; spawn ignores it). */
function transportOf(l: Link): string | undefined {
  const t = (l.node as { transport?: unknown } | undefined)?.transport;
  return t === 'quic' || t === 'auto' ? t : undefined;
}

function outputConfig(o: Link): DataConfig {
  const d: DataConfig = { mode: 'stream', protocol: o.protocol };
  if (o.pattern) d.pattern = o.pattern;
  d.port = o.port;
  const transport = transportOf(o);
  if (transport) d.transport = transport;
  return d;
}

function inputConfig(sources: string[], protocol: string, pattern: string | undefined, transport?: string): DataConfig {
  const d: DataConfig = { mode: 'stream', source_stage: sources[0] };
  if (sources.length > 1) d.source_stages = sources;
  d.protocol = protocol;
  if (pattern) d.pattern = pattern;
  if (transport) d.transport = transport;
  return d;
}

/** Object keys as data: a key such as `__proto__` from a stage's extra becomes a plain field. */
function setField(o: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

export function exportStage(view: FlowView, stage: Stage, flowPath?: string): SpawnStage {
  // Keys in the documented order: JSON keeps insertion order.
  const s = { stage_id: stage.stageId, instance_type: stage.instanceType, instance_count: stage.instanceCount } as SpawnStage;
  if (stage.region) s.region = stage.region;
  if (stage.ami) s.ami = stage.ami;
  if (stage.spot) s.spot = true;
  if (stage.timeout) s.timeout = stage.timeout;
  s.command = stageCommand(stage, flowPath);
  const deps = dependenciesOf(view, stage);
  if (deps.length) s.depends_on = deps;

  const inputs = inputsOf(view, stage);
  if (inputs.length) {
    const all: string[] = [];
    const groups = new Map<string, { protocol: string; pattern?: string; transport?: string; sources: string[] }>();
    for (const l of inputs) {
      const key = `${l.protocol}/${l.pattern ?? ''}/${transportOf(l) ?? ''}`;
      const g = groups.get(key) ?? groups.set(key, { protocol: l.protocol, pattern: l.pattern, transport: transportOf(l), sources: [] }).get(key)!;
      for (const src of l.sources) {
        if (!g.sources.includes(src)) g.sources.push(src);
        if (!all.includes(src)) all.push(src);
      }
    }
    const list = [...groups.values()];
    s.data_input = inputConfig(all, list[0].protocol, list[0].pattern, list[0].transport);
    if (list.length > 1) s.data_inputs = list.map((g) => inputConfig(g.sources, g.protocol, g.pattern, g.transport));
  }
  const outputs = outputsOf(view, stage);
  if (outputs.length) {
    s.data_output = outputConfig(outputs[0]);
    if (outputs.length > 1) s.data_outputs = outputs.map(outputConfig);
  }
  if (Object.keys(stage.env).length) s.env = { ...stage.env };
  const rdma = usesRdma(view, stage);
  const placement = stage.placementGroup || (rdma ? 'auto' : '');
  if (placement) s.placement_group = placement;
  if (stage.efa || rdma) s.efa_enabled = true;
  for (const [k, v] of Object.entries(stage.extra)) if (!COMPUTED_STAGE_FIELDS.includes(k)) setField(s, k, v);
  return s;
}

/**
 * The pipeline a flow describes, and the problems that keep it from running (the flow rules of
 * validate, then spawn's rules on the result). The pipeline is built even when there are problems.
 */
export function exportPipeline(flow: unknown[], options: ExportOptions = {}): ExportResult {
  const view = readFlowView(flow);
  const pipelineId = options.pipelineId ?? defaultPipelineId(options.fileName);
  const pipeline: SpawnPipeline = {
    pipeline_id: pipelineId,
    pipeline_name: options.name ?? pipelineId,
    s3_bucket: options.s3Bucket ?? `spawn-red-${pipelineId}`,
    on_failure: 'stop',
    stages: stageOrder(view).order.map((stage) => exportStage(view, stage, options.flowPath)),
  };
  let problems = flowProblems(view);
  // Spawn's rules catch what the flow rules cannot see (the options) and anything they miss.
  if (problems.length === 0) problems = validatePipeline(pipeline);
  return { pipeline, problems };
}

/** The file text: 2-space indentation and a final new line. */
export function pipelineJson(pipeline: unknown): string {
  return `${JSON.stringify(pipeline, null, 2)}\n`;
}
