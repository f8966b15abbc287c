import type { ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { freePort } from '../test/support/ports';
import { providerAlone } from './provider-alone';

/**
 * RDMA benchmark (the last step of `npm run bench`): rdma out → efa in between two headless
 * Node-RED runtimes over libfabric's shm and tcp providers, side by side with spawn-red push → pull
 * over ZeroMQ/TCP, at 64 KiB and 1 MiB, the competitors interleaved in one run; medians and
 * ratios to the ZeroMQ path. Every run checks that all messages arrive, once and in order.
 *
 *   node dist/bench/rdma.js                 3 repetitions (about 2 minutes on 2 cores)
 *   node dist/bench/rdma.js --quick         a tenth of the messages, 1 repetition
 *   options: --reps N  --sizes 65536,1048576  --out NAME (bench/results/NAME.md; default rdma)
 *
 * Timing as in bench/run.ts: the receiver's clock at its first and last message.
 * Targets (issue 6): shm ≥ 3× the ZeroMQ path's bytes/s at 1 MiB; tcp ≥ 1×.
 *
 * At 1 MiB each repetition also runs the providers alone (bench/provider-alone.ts: the bare
 * endpoints moving the same fresh payloads, no Node-RED), the ceiling of the RDMA nodes, so that
 * every run shows how far the targets are from what libfabric itself does on this machine.
 */

const children = new Set<ChildProcess>();
// eslint-disable-next-line @typescript-eslint/no-var-requires
const childProcess = require('child_process') as typeof import('child_process');
const realFork = childProcess.fork;
childProcess.fork = ((...args: unknown[]) => {
  const proc = (realFork as (...a: unknown[]) => ChildProcess)(...args);
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  return proc;
}) as typeof realFork;
const killAll = () => children.forEach((p) => p.exitCode === null && p.signalCode === null && p.kill('SIGKILL'));
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { startChildRuntime, tabFlow } = require('../test/support/child-runtime') as typeof import('../test/support/child-runtime');
type ChildRuntime = Awaited<ReturnType<typeof startChildRuntime>>;

const ROOT = path.resolve(__dirname, '..', '..');
const RESULTS_DIR = path.join(ROOT, 'bench', 'results');

type Competitor = 'zmq push→pull' | 'rdma shm' | 'rdma tcp' | 'shm alone' | 'tcp alone';
const COMPETITORS: Competitor[] = ['zmq push→pull', 'rdma shm', 'rdma tcp'];
const ALONE: Competitor[] = ['shm alone', 'tcp alone'];

interface Case {
  size: number;
  label: string;
  count: number;
  window: number;
  /** Targets by competitor: ratio of its MB/s to the ZeroMQ path's. */
  targets: Partial<Record<Competitor, number>>;
  /** Also run the providers alone (the ceiling). */
  alone?: boolean;
}

const CASES: Case[] = [
  { size: 65536, label: '64 KiB', count: 30_000, window: 1_000, targets: {} },
  { size: 1 << 20, label: '1 MiB', count: 3_000, window: 16, targets: { 'rdma shm': 3, 'rdma tcp': 1 }, alone: true },
];

interface Run {
  competitor: Competitor;
  size: number;
  rep: number;
  ms: number;
  mbPerSec: number;
}

function parse(argv: string[]) {
  const opts = { quick: false, reps: 3, sizes: undefined as number[] | undefined, out: undefined as string | undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') opts.quick = true;
    else if (a === '--reps') opts.reps = Number(argv[++i]);
    else if (a === '--sizes') opts.sizes = argv[++i].split(',').map(Number);
    else if (a === '--out') opts.out = argv[++i];
    else throw new Error(`unknown option ${a}`);
  }
  if (opts.quick) opts.reps = 1;
  return opts;
}

async function runOnce(competitor: Competitor, c: Case, rep: number): Promise<Run> {
  if (competitor === 'shm alone' || competitor === 'tcp alone') {
    const mbPerSec = await providerAlone(competitor === 'shm alone' ? 'shm' : 'tcp', c);
    return { competitor, size: c.size, rep, ms: Math.round((c.count * c.size) / 1000 / mbPerSec), mbPerSec };
  }
  const port = await freePort();
  const out =
    competitor === 'zmq push→pull'
      ? { id: 'out', type: 'spawn-push', addr: '127.0.0.1', port }
      : { id: 'out', type: 'spawn-rdma-out', provider: competitor === 'rdma shm' ? 'shm' : 'tcp', addr: '127.0.0.1', port };
  const inn =
    competitor === 'zmq push→pull'
      ? { id: 'in', type: 'spawn-pull', endpoints: `tcp://127.0.0.1:${port}`, wires: [['sink']] }
      : { id: 'in', type: 'spawn-efa-in', provider: competitor === 'rdma shm' ? 'shm' : 'tcp', endpoints: `tcp://127.0.0.1:${port}`, wires: [['sink']] };
  const producerFlow = tabFlow('producer', [
    // startDelay: the receiver connects first, so no pre-connection backlog is measured.
    { id: 'src', type: 'seq-source', count: c.count, size: c.size, kind: 'buffer', window: c.window, startDelay: 1000, wires: [['out']] },
    out,
  ]);
  const consumerFlow = tabFlow('consumer', [inn, { id: 'sink', type: 'seq-sink', expect: c.count, label: 'sink' }]);
  const consumer = await startChildRuntime(consumerFlow, 'bench-rdma-consumer');
  let producer: ChildRuntime | undefined;
  try {
    producer = await startChildRuntime(producerFlow, 'bench-rdma-producer');
    const r = await consumer.waitForReport((x) => x.done, 180_000);
    const problems: string[] = [];
    if (r.count !== c.count) problems.push(`received ${r.count} of ${c.count}`);
    if (r.outOfOrder !== 0) problems.push(`${r.outOfOrder} out of order (${r.firstProblem})`);
    if (r.bytes !== c.count * c.size) problems.push(`received ${r.bytes} bytes`);
    if (problems.length) throw new Error(`${competitor} ${c.label}: ${problems.join('; ')}\n${producer.output()}\n${consumer.output()}`);
    const ms = r.lastAt - r.firstAt;
    return { competitor, size: c.size, rep, ms, mbPerSec: r.bytes / ms / 1000 };
  } finally {
    if (producer) await producer.stop(10_000);
    await consumer.stop(10_000);
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function table(cases: Case[], runs: Run[]): string {
  const lines = [
    '| payload | messages | zmq push→pull MB/s | rdma shm MB/s | shm / zmq | rdma tcp MB/s | tcp / zmq | targets |',
    '|---|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const c of cases) {
    const mb = (who: Competitor) => median(runs.filter((r) => r.size === c.size && r.competitor === who).map((r) => r.mbPerSec));
    const zmq = mb('zmq push→pull');
    const [shm, tcp] = [mb('rdma shm'), mb('rdma tcp')];
    const targets = Object.entries(c.targets)
      .map(([who, t]) => `${who.replace('rdma ', '')} ≥ ${t}×: ${(who === 'rdma shm' ? shm : tcp) / zmq >= t! ? 'met' : '**missed**'}`)
      .join('; ');
    lines.push(`| ${c.label} | ${c.count.toLocaleString('en-US')} | ${zmq.toFixed(0)} | ${shm.toFixed(0)} | ${(shm / zmq).toFixed(2)}× | ${tcp.toFixed(0)} | ${(tcp / zmq).toFixed(2)}× | ${targets || '–'} |`);
  }
  const ceilings = cases.filter((c) => c.alone);
  if (ceilings.length) {
    lines.push('', 'The ceiling: libfabric alone, the bare endpoints moving the same fresh payloads with nothing else (bench/provider-alone.ts):', '');
    lines.push('| payload | shm alone MB/s | shm alone / zmq | rdma shm / shm alone | tcp alone MB/s | tcp alone / zmq | rdma tcp / tcp alone |', '|---|---:|---:|---:|---:|---:|---:|');
    for (const c of ceilings) {
      const mb = (who: Competitor) => median(runs.filter((r) => r.size === c.size && r.competitor === who).map((r) => r.mbPerSec));
      const [zmq, shm, tcp, shmAlone, tcpAlone] = [mb('zmq push→pull'), mb('rdma shm'), mb('rdma tcp'), mb('shm alone'), mb('tcp alone')];
      lines.push(`| ${c.label} | ${shmAlone.toFixed(0)} | ${(shmAlone / zmq).toFixed(2)}× | ${(shm / shmAlone).toFixed(2)} | ${tcpAlone.toFixed(0)} | ${(tcpAlone / zmq).toFixed(2)}× | ${(tcp / tcpAlone).toFixed(2)} |`);
    }
  }
  return lines.join('\n');
}

async function main(): Promise<number> {
  const opts = parse(process.argv.slice(2));
  const cases = CASES.filter((c) => !opts.sizes || opts.sizes.includes(c.size)).map((c) => (opts.quick ? { ...c, count: Math.max(100, Math.round(c.count / 10)) } : c));
  const started = new Date();
  const machine = `${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), Node ${process.version}`;
  console.log(`spawn-red RDMA benchmark${opts.quick ? ' (--quick)' : ''}: ${opts.reps} repetition(s), medians\n${machine}\n`);
  const runs: Run[] = [];
  for (const c of cases) {
    for (let rep = 1; rep <= opts.reps; rep++) {
      // Interleaved, so drift on a shared machine hits every competitor alike.
      for (const who of c.alone ? [...COMPETITORS, ...ALONE] : COMPETITORS) {
        const r = await runOnce(who, c, rep);
        runs.push(r);
        console.log(`  ${c.label.padEnd(6)} rep ${rep} ${who.padEnd(14)} ${r.mbPerSec.toFixed(0).padStart(6)} MB/s (${r.ms} ms)`);
      }
    }
  }
  const t = table(cases, runs);
  console.log(`\n${t}\n`);
  const doc = [
    '# spawn-red RDMA benchmark results',
    '',
    `${started.toISOString()}, \`node dist/bench/rdma.js${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}\`, ${opts.reps} repetition(s), medians. MB = 10^6 bytes of payload.`,
    '',
    '```',
    machine,
    '```',
    '',
    t,
    '',
    '## Every run',
    '',
    '| payload | rep | competitor | ms | MB/s |',
    '|---|---:|---|---:|---:|',
    ...runs.map((r) => `| ${r.size} | ${r.rep} | ${r.competitor} | ${r.ms} | ${r.mbPerSec.toFixed(0)} |`),
    '',
  ].join('\n');
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const base = path.join(RESULTS_DIR, opts.out ?? (opts.quick ? 'rdma-quick' : 'rdma'));
  fs.writeFileSync(`${base}.md`, doc);
  fs.writeFileSync(`${base}.json`, JSON.stringify({ started: started.toISOString(), options: opts, machine, cases, runs }, null, 2));
  console.log(`written: ${path.relative(process.cwd(), `${base}.md`)}`);
  return 0;
}

main().then(
  (code) => {
    killAll();
    process.exit(code);
  },
  (e) => {
    console.error(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    killAll();
    process.exit(1);
  },
);
