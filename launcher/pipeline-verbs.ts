import * as fs from 'fs';
import type { ParsedArgs } from './cli';
import { exportPipeline, pipelineJson } from './export';
import { graphSummary, pipelineGraph, PipelineGraph, renderGraph } from './graph';
import { parseJson } from './json-location';
import { formatProblem, Problem, validatePipeline } from './validate';

/**
 * The file-reading side of `spawn-red export`, `validate` and `graph` (cli.ts registers them):
 * read a Node-RED flow or a spawn pipeline, call the pure functions, print, return the exit code
 * (0 done, 1 problems, printed one per line on stderr).
 */

export type Source = { kind: 'flow'; flow: unknown[] } | { kind: 'pipeline'; pipeline: Record<string, unknown> };

/** Read a flow (an array of nodes, or Node-RED's `{"flows": [...]}`) or a pipeline (an object with "stages"). */
export function readSource(file: string): { source?: Source; problems: Problem[] } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const message = err.code === 'ENOENT' ? 'does not exist' : err.code === 'EISDIR' ? 'is a directory' : `cannot be read: ${err.message}`;
    return { problems: [{ where: file, field: '', message }] };
  }
  const parsed = parseJson(text);
  if (!parsed.ok) return { problems: [{ where: file, field: `line ${parsed.line}, column ${parsed.column}`, message: parsed.reason }] };
  const v = parsed.value;
  if (Array.isArray(v)) return { source: { kind: 'flow', flow: v }, problems: [] };
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (Array.isArray(o.flows)) return { source: { kind: 'flow', flow: o.flows }, problems: [] };
    if ('stages' in o) return { source: { kind: 'pipeline', pipeline: o }, problems: [] };
  }
  return { problems: [{ where: file, field: '', message: 'is neither a Node-RED flow (an array of nodes) nor a spawn pipeline (an object with "stages")' }] };
}

/** A usage problem with the arguments, or undefined: one file, and only the flags the verb knows. */
export function checkArgs(args: ParsedArgs, known: string[]): string | undefined {
  const unknown = Object.keys(args.flags).filter((f) => f !== 'help' && !known.includes(f));
  if (unknown.length) return `unknown option ${unknown.map((f) => (f === 'output' ? '-o' : `--${f}`)).join(', ')}`;
  for (const f of known) if (args.flags[f] === true && f !== 'json') return `--${f} needs a value`;
  if (args.positional.length === 0) return 'needs a file: a Node-RED flow or a spawn pipeline';
  if (args.positional.length > 1) return `takes one file, got ${args.positional.length}: ${args.positional.join(' ')}`;
  return undefined;
}

function printProblems(problems: Problem[]): void {
  for (const p of problems) console.error(formatProblem(p));
}

/** The pipeline a source describes (a flow through export), its graph and its problems. */
function analyse(file: string, source: Source): { pipeline: unknown; graph: PipelineGraph; problems: Problem[]; title: string } {
  if (source.kind === 'flow') {
    const { pipeline, problems } = exportPipeline(source.flow, { fileName: file });
    return { pipeline, graph: pipelineGraph(pipeline), problems, title: pipeline.pipeline_id };
  }
  const p = source.pipeline;
  return { pipeline: p, graph: pipelineGraph(p), problems: validatePipeline(p), title: typeof p.pipeline_id === 'string' && p.pipeline_id ? p.pipeline_id : file };
}

export function exportCommand(args: ParsedArgs): number {
  const file = args.positional[0];
  const { source, problems } = readSource(file);
  if (!source) {
    printProblems(problems);
    return 1;
  }
  if (source.kind === 'pipeline') {
    console.error(`${file}: is a spawn pipeline already; export reads a Node-RED flow`);
    return 1;
  }
  const opt = (name: string) => (typeof args.flags[name] === 'string' ? (args.flags[name] as string) : undefined);
  const result = exportPipeline(source.flow, { fileName: file, pipelineId: opt('pipeline-id'), name: opt('name'), s3Bucket: opt('s3-bucket') });
  if (result.problems.length) {
    printProblems(result.problems);
    return 1;
  }
  const text = pipelineJson(result.pipeline);
  const out = opt('output');
  if (out === undefined) {
    process.stdout.write(text);
    return 0;
  }
  try {
    fs.writeFileSync(out, text);
  } catch (e) {
    console.error(`${out}: cannot be written: ${(e as Error).message}`);
    return 1;
  }
  console.log(`wrote ${out}: pipeline ${result.pipeline.pipeline_id}, ${graphSummary(pipelineGraph(result.pipeline))}`);
  return 0;
}

/** Read the file named by the verb's argument and analyse it; undefined (problems printed) when it cannot be read. */
function readAndAnalyse(args: ParsedArgs): ReturnType<typeof analyse> | undefined {
  const file = args.positional[0];
  const { source, problems } = readSource(file);
  if (!source) {
    printProblems(problems);
    return undefined;
  }
  return analyse(file, source);
}

export function validateCommand(args: ParsedArgs): number {
  const a = readAndAnalyse(args);
  if (!a) return 1;
  if (a.problems.length) {
    printProblems(a.problems);
    return 1;
  }
  console.log(`ok: ${graphSummary(a.graph)}`);
  return 0;
}

export function graphCommand(args: ParsedArgs): number {
  const a = readAndAnalyse(args);
  if (!a) return 1;
  process.stdout.write(args.flags.json ? `${JSON.stringify(a.graph, null, 2)}\n` : renderGraph(a.graph, a.title));
  // The graph is drawn even so; the problems say why the pipeline would not run.
  printProblems(a.problems);
  return a.problems.length ? 1 : 0;
}
