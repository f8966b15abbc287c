import { ChildProcess, fork } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { startChildRuntime, tabFlow } from '../test/support/child-runtime';
import { freePort } from '../test/support/ports';
import { freeUdpPort, quicIdentities } from '../test/support/quic';

/**
 * QUIC benchmark, all competitors side by side in one run (`node dist/bench/quic.js`, also part
 * of `npm run bench`):
 *   stock      @matrixai/quic's public classes, raw bytes over one stream (two processes)
 *   lean       spawn-red's QUIC engine and stream (native/quic), spawn-encoded batched messages (two processes)
 *   node tcp   spawn-red push → pull over ZeroMQ TCP between two headless Node-RED runtimes
 *   node quic  the same flow with transport "quic"
 * Targets (64 KiB): lean ≥ 100× stock, and node quic ≥ 0.25× node tcp in bytes/s.
 * Options: --quick (fewer messages), --reps N (median of N; default 3), --sizes 100,65536,
 * --only stock,lean,tcp,quic (a subset; ratios then mean nothing).
 */

const CHILD = path.join(__dirname, 'quic-child.js');
const RESULTS = path.resolve(__dirname, '..', '..', 'bench', 'results');

interface Case {
  size: number;
  label: string;
  /** Messages for lean and the node runs; the stock classes get `stockCount` (they are ~100× slower). */
  count: number;
  stockCount: number;
  window: number;
}

const CASES: Case[] = [
  // A window for both node runs: unpaced, a producer faster than the transport fills the queue to
  // its limit and further messages are refused (EQUEUEFULL), which is not what is measured here.
  { size: 100, label: '100 B', count: 300_000, stockCount: 20_000, window: 20_000 },
  { size: 65536, label: '64 KiB', count: 10_000, stockCount: 100, window: 1000 },
];

interface Result {
  messages: number;
  bytes: number;
  ms: number;
}

const mbps = (r: Result) => r.bytes / 1e6 / (Math.max(1, r.ms) / 1000);
const msgps = (r: Result) => r.messages / (Math.max(1, r.ms) / 1000);

function child(args: string[]): ChildProcess {
  return fork(CHILD, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

function next<T>(proc: ChildProcess, event: string, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no "${event}" from the ${proc.spawnargs[2]} child within ${ms / 1000} s`)), ms);
    const on = (m: { event?: string }) => {
      if (m.event === event) {
        clearTimeout(t);
        proc.off('message', on);
        resolve(m as T);
      }
    };
    proc.on('message', on);
    proc.once('exit', (code) => reject(new Error(`${proc.spawnargs[2]} child exited with ${code}`)));
  });
}

async function rawPair(kind: 'stock' | 'lean', c: Case, tls: string[]): Promise<Result> {
  const count = kind === 'stock' ? c.stockCount : c.count;
  const recv = child([kind === 'stock' ? 'stock-recv' : 'lean-pull', String(c.size), String(count), String(await freeUdpPort()), tls[0]]);
  let sendProc: ChildProcess | undefined;
  try {
    const ready = await next<{ port: number }>(recv, 'ready', 20_000);
    sendProc = child([kind === 'stock' ? 'stock-send' : 'lean-push', String(c.size), String(count), String(ready.port), tls[1]]);
    const done = await next<{ bytes: number; ms: number; messages: number }>(recv, 'done', 300_000);
    return { messages: done.messages, bytes: done.bytes, ms: done.ms };
  } finally {
    for (const p of [recv, sendProc]) if (p && p.exitCode === null) p.kill('SIGKILL');
  }
}

async function nodePair(transport: 'tcp' | 'quic', c: Case, tls: string[]): Promise<Result> {
  const port = transport === 'tcp' ? await freePort() : await freeUdpPort();
  const consumer = await startChildRuntime(
    tabFlow('consumer', [
      { id: 'pull', type: 'spawn-pull', transport, endpoints: `tcp://127.0.0.1:${port}`, wires: [['sink']] },
      { id: 'sink', type: 'seq-sink', expect: c.count, label: 'sink' },
    ]),
    `bench-${transport}-consumer`,
    { env: { SPAWN_QUIC_DIR: tls[1] } },
  );
  let producer: Awaited<ReturnType<typeof startChildRuntime>> | undefined;
  try {
    producer = await startChildRuntime(
      tabFlow('producer', [
        { id: 'src', type: 'seq-source', count: c.count, size: c.size, kind: 'buffer', window: c.window, startDelay: 1000, wires: [['push']] },
        { id: 'push', type: 'spawn-push', transport, addr: '127.0.0.1', port },
      ]),
      `bench-${transport}-producer`,
      { env: { SPAWN_QUIC_DIR: tls[0] } },
    );
    const r = await consumer.waitForReport((x) => x.done, 300_000);
    if (r.count !== c.count || r.outOfOrder !== 0) throw new Error(`node ${transport} ${c.label}: ${r.count} messages, ${r.outOfOrder} out of order`);
    return { messages: r.count, bytes: r.bytes, ms: r.lastAt - r.firstAt };
  } finally {
    if (producer) await producer.stop(10_000);
    await consumer.stop(10_000);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const quick = argv.includes('--quick');
  const repsAt = argv.indexOf('--reps');
  const reps = repsAt >= 0 ? Number(argv[repsAt + 1]) : quick ? 1 : 3;
  const onlyAt = argv.indexOf('--only');
  const only = new Set(onlyAt >= 0 ? argv[onlyAt + 1].split(',') : ['stock', 'lean', 'tcp', 'quic']);
  const sizesAt = argv.indexOf('--sizes');
  const sizes = sizesAt >= 0 ? new Set(argv[sizesAt + 1].split(',').map(Number)) : undefined;
  const tls = quicIdentities(2, 'bench');
  const rows: string[] = [];
  const json: Record<string, unknown>[] = [];
  console.log(`QUIC benchmark: ${reps} repetition(s), medians${quick ? ' (--quick)' : ''}`);
  for (const base of CASES.filter((k) => !sizes || sizes.has(k.size))) {
    const c = quick ? { ...base, count: Math.ceil(base.count / 5), stockCount: Math.ceil(base.stockCount / 2) } : base;
    const runs: Record<string, Result[]> = { stock: [], lean: [], tcp: [], quic: [] };
    for (let rep = 0; rep < reps; rep++) {
      const none = { messages: 0, bytes: 0, ms: 1 };
      runs.stock.push(only.has('stock') ? await rawPair('stock', c, tls) : none);
      runs.lean.push(only.has('lean') ? await rawPair('lean', c, tls) : none);
      runs.tcp.push(only.has('tcp') ? await nodePair('tcp', c, tls) : none);
      runs.quic.push(only.has('quic') ? await nodePair('quic', c, tls) : none);
      console.log(
        `  ${c.label} rep ${rep + 1}: ` +
          Object.entries(runs)
            .map(([k, v]) => `${k} ${mbps(v[rep]).toFixed(1)} MB/s`)
            .join(', '),
      );
    }
    const med = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, { mbps: median(v.map(mbps)), msgps: median(v.map(msgps)) }]));
    // Ratios per repetition (the competitors of one repetition ran back to back), then their median:
    // on a shared machine the load moves between repetitions, so a ratio of medians can flatter.
    const perRep = (a: Result[], b: Result[]) => a.map((r, i) => mbps(r) / mbps(b[i]));
    const leanRatios = perRep(runs.lean, runs.stock);
    const quicRatios = perRep(runs.quic, runs.tcp);
    const leanVsStock = median(leanRatios);
    const quicVsTcp = median(quicRatios);
    const range = (xs: number[], digits: number) => (xs.length > 1 ? ` (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})` : '');
    json.push({ case: c, runs, medians: med, leanVsStock, quicVsTcp, leanRatios, quicRatios });
    const f = (x: { mbps: number; msgps: number }) => `${x.mbps >= 100 ? Math.round(x.mbps) : x.mbps.toFixed(2)} MB/s (${Math.round(x.msgps).toLocaleString('en-US')} msg/s)`;
    const targets = c.size === 65536 ? ` | ${leanVsStock >= 100 ? 'met' : 'missed'} / ${quicVsTcp >= 0.25 ? 'met' : 'missed'}` : ' | –';
    rows.push(`| ${c.label} | ${f(med.stock)} | ${f(med.lean)} | ${f(med.tcp)} | ${f(med.quic)} | ${leanVsStock.toFixed(0)}×${range(leanRatios, 0)} | ${quicVsTcp.toFixed(2)}×${range(quicRatios, 2)}${targets} |`);
  }
  const table = [
    '| payload | stock @matrixai/quic classes | spawn-red QUIC engine (lean) | spawn-red node TCP (ZeroMQ) | spawn-red node QUIC | lean / stock (range) | node QUIC / node TCP (range) | targets (≥ 100×, ≥ 0.25×) |',
    '|---|---:|---:|---:|---:|---:|---:|---|',
    ...rows,
  ].join('\n');
  console.log(`\n${table}\n`);
  fs.mkdirSync(RESULTS, { recursive: true });
  const base = path.join(RESULTS, quick ? 'quic-quick' : 'quic-latest');
  fs.writeFileSync(`${base}.md`, `${table}\n`);
  fs.writeFileSync(`${base}.json`, JSON.stringify(json, null, 2));
  console.log(`written: ${path.relative(process.cwd(), `${base}.md`)}`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
