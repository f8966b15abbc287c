import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TEST_NODES_DIR } from '../test/support/child-runtime';

/**
 * Local launch benchmark: the time from `spawn-red launch` to the first message at the consumer
 * of a three-stage pipeline (producer → processor ×2 → consumer), and the resident memory of each
 * instance once it runs. Targets: first message within 5 s, under 120 MB RSS per instance.
 *
 *   node dist/bench/launch.js [--reps N]      (npm run bench runs it after the transport benchmark)
 */

const CLI = path.resolve(__dirname, '..', '..', 'bin', 'spawn-red.js');

function flow(report: string): object[] {
  const stage = (tab: string, id: string, count = 1) => ({ id: `st-${tab}`, type: 'spawn-stage', z: tab, stageId: id, instanceCount: count, wires: [] });
  return [
    { id: 'tP', type: 'tab', label: 'producer' },
    { id: 'tW', type: 'tab', label: 'processor' },
    { id: 'tC', type: 'tab', label: 'consumer' },
    stage('tP', 'producer'),
    // Starts at once: the first message waits in the push until a processor is connected.
    { id: 'src', type: 'seq-source', z: 'tP', count: 100_000, size: 100, kind: 'buffer', window: 2000, wires: [['push1']] },
    { id: 'push1', type: 'spawn-push', z: 'tP', port: 7201, wires: [] },
    stage('tW', 'processor', 2),
    { id: 'pull1', type: 'spawn-pull', z: 'tW', sourceStage: 'producer', wires: [['push2']] },
    { id: 'push2', type: 'spawn-push', z: 'tW', port: 7202, wires: [] },
    stage('tC', 'consumer'),
    { id: 'pull2', type: 'spawn-pull', z: 'tC', sourceStage: 'processor', wires: [['sink']] },
    { id: 'sink', type: 'seq-sink', z: 'tC', expect: 100_000, label: 'consumer', ordering: 'any', reportFile: report, wires: [] },
  ];
}

function rssMb(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

export interface LaunchResult {
  firstMessageMs: number;
  allMessagesMs: number;
  rss: Array<{ instance: string; mb: number }>;
}

export async function benchLaunch(): Promise<LaunchResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-bench-launch-'));
  const env = { ...process.env, SPAWN_RED_HOME: path.join(dir, 'home'), SPAWN_RED_NODES_DIRS: TEST_NODES_DIR };
  const report = path.join(dir, 'report.json');
  const flowFile = path.join(dir, 'bench-launch.json');
  fs.writeFileSync(flowFile, JSON.stringify(flow(report)));
  const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env, timeout: 60_000 });
  const t0 = Date.now();
  try {
    const r = cli('launch', flowFile, '--detached');
    if (r.status !== 0) throw new Error(`launch failed:\n${r.stdout}${r.stderr}`);
    let first = 0;
    let all = 0;
    const deadline = t0 + 60_000;
    while (!all) {
      if (Date.now() > deadline) throw new Error('the consumer did not receive every message within 60 s');
      const rep = fs.existsSync(report) ? (JSON.parse(fs.readFileSync(report, 'utf8')) as { firstAt: number; lastAt: number; done: boolean; count: number }) : undefined;
      if (rep && rep.count > 0 && !first) first = rep.firstAt - t0;
      if (rep?.done) all = rep.lastAt - t0;
      await new Promise((res) => setTimeout(res, 100));
    }
    const status = JSON.parse(cli('status', 'bench-launch', '--json').stdout) as { instances: Array<{ stage_id: string; index: number; pid: number }> };
    const rss = status.instances.map((i) => ({ instance: `${i.stage_id}/${i.index}`, mb: rssMb(i.pid) ?? NaN }));
    return { firstMessageMs: first, allMessagesMs: all, rss };
  } finally {
    cli('down', 'bench-launch');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function launchTable(runs: LaunchResult[]): string {
  const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const first = median(runs.map((r) => r.firstMessageMs));
  const instances = runs[0].rss.map((x) => x.instance);
  const lines = [
    '| measure | value | target |',
    '|---|---:|---:|',
    `| launch → first message at the consumer (median of ${runs.length}) | ${(first / 1000).toFixed(2)} s | ≤ 5 s: ${first <= 5000 ? 'met' : '**missed**'} |`,
    `| launch → all 100,000 messages at the consumer | ${(median(runs.map((r) => r.allMessagesMs)) / 1000).toFixed(2)} s | – |`,
  ];
  for (const inst of instances) {
    const mb = median(runs.map((r) => r.rss.find((x) => x.instance === inst)?.mb ?? NaN));
    lines.push(`| RSS of ${inst} after the run | ${mb.toFixed(0)} MB | < 120 MB: ${mb < 120 ? 'met' : '**missed**'} |`);
  }
  return lines.join('\n');
}

if (require.main === module) {
  const i = process.argv.indexOf('--reps');
  const reps = i > 0 ? Number(process.argv[i + 1]) : 3;
  (async () => {
    const runs: LaunchResult[] = [];
    for (let k = 0; k < reps; k++) runs.push(await benchLaunch());
    console.log(launchTable(runs));
  })().catch((e) => {
    console.error(String(e));
    process.exit(1);
  });
}
