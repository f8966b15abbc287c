import * as fs from 'fs';
import * as path from 'path';
import { startChildRuntime, tabFlow } from '../test/support/child-runtime';
import { freePort } from '../test/support/ports';

/**
 * `npm run bench` (second part): exactly-once against at-most-once, spawn-red push → pull between
 * two headless Node-RED runtimes on 127.0.0.1, 100 B and 64 KiB payloads, the two modes
 * interleaved in the same run; medians of the repetitions, and the ratio exactly-once / at-most-once.
 *
 *   node dist/bench/delivery.js            full: 3 repetitions
 *   node dist/bench/delivery.js --quick    a fifth of the messages, 1 repetition
 *
 * Timing as in bench/run.ts: the receiving seq-sink's clock at its first and its last message.
 * Every run checks that all messages arrived once and in order. Target: exactly-once keeps at
 * least 0.7 of at-most-once's throughput at 64 KiB. Results: bench/results/delivery.md.
 *
 * A third mode, exactly-once with the receiver's watermark file off (SPAWN_DELIVERY_STATE=off on
 * the consumer: watermarks in memory only), runs in the same rounds: the ratio of exactly-once to
 * it is what keeping the watermarks across a crash costs (native/delivery/watermarks.ts).
 *
 * The same comparison over RDMA: rdma out → efa in over libfabric's shm provider at 64 KiB (the
 * delivery engine over the fabric, native/delivery/fabric-links.ts). `--only rdma` runs just that
 * case (`--only zmq` the others).
 */

type Mode = 'at-most-once' | 'exactly-once' | 'exactly-once-no-file';
const MODES: Mode[] = ['at-most-once', 'exactly-once', 'exactly-once-no-file'];
type Transport = 'zmq' | 'rdma shm';
interface Case {
  size: number;
  count: number;
  window: number;
  transport: Transport;
}

const quick = process.argv.includes('--quick');
const reps = quick ? 1 : 3;
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
const CASES: Case[] = [
  { size: 100, count: quick ? 200_000 : 1_000_000, window: 50_000, transport: 'zmq' as Transport },
  { size: 65536, count: quick ? 4000 : 20_000, window: 1000, transport: 'zmq' as Transport },
  { size: 65536, count: quick ? 4000 : 20_000, window: 1000, transport: 'rdma shm' as Transport },
].filter((c) => !only || c.transport.startsWith(only));

/** The receiving and the sending node of a case. */
function ends(c: Case, mode: 'at-most-once' | 'exactly-once', port: number) {
  if (c.transport === 'zmq') {
    return [
      { id: 'pull', type: 'spawn-pull', endpoints: `tcp://127.0.0.1:${port}`, delivery: mode, wires: [['sink']] },
      { id: 'push', type: 'spawn-push', addr: '127.0.0.1', port, delivery: mode },
    ];
  }
  return [
    { id: 'pull', type: 'spawn-efa-in', provider: 'shm', endpoints: `tcp://127.0.0.1:${port}`, delivery: mode, wires: [['sink']] },
    { id: 'push', type: 'spawn-rdma-out', provider: 'shm', addr: '127.0.0.1', port, delivery: mode },
  ];
}

async function run(mode: Mode, c: Case): Promise<number> {
  const port = await freePort();
  const noFile = mode === 'exactly-once-no-file';
  const [input, output] = ends(c, noFile ? 'exactly-once' : mode, port);
  const consumer = await startChildRuntime(
    tabFlow('consumer', [input, { id: 'sink', type: 'seq-sink', expect: c.count, label: 'sink' }]),
    'bench-consumer',
    noFile ? { env: { SPAWN_DELIVERY_STATE: 'off' } } : {},
  );
  const producer = await startChildRuntime(
    tabFlow('producer', [{ id: 'src', type: 'seq-source', count: c.count, size: c.size, kind: 'buffer', window: c.window, startDelay: 1000, wires: [['push']] }, output]),
    'bench-producer',
  );
  try {
    const r = await consumer.waitForReport((x) => x.done, 300_000);
    if (r.count !== c.count || r.outOfOrder !== 0) throw new Error(`${c.transport} ${mode} ${c.size} B: ${r.count} of ${c.count}, ${r.outOfOrder} out of order (${r.firstProblem})`);
    return r.count / ((r.lastAt - r.firstAt) / 1000);
  } finally {
    await producer.stop(10_000);
    await consumer.stop(10_000);
  }
}

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (n: number) => (n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0));

async function main(): Promise<void> {
  const lines = [
    '| transport | payload | messages | at-most-once msg/s | exactly-once msg/s | exactly-once MB/s | ratio | exactly-once, no watermark file, msg/s | with file / without |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  let ok = true;
  for (const c of CASES) {
    const rates: Record<Mode, number[]> = { 'at-most-once': [], 'exactly-once': [], 'exactly-once-no-file': [] };
    for (let i = 0; i < reps; i++) {
      for (const mode of MODES) rates[mode].push(await run(mode, c));
    }
    const noFile = median(rates['exactly-once-no-file']);
    const amo = median(rates['at-most-once']);
    const eo = median(rates['exactly-once']);
    const ratio = eo / amo;
    if (c.size === 65536 && c.transport === 'zmq' && ratio < 0.7) ok = false;
    const label = c.size >= 1024 ? `${c.size / 1024} KiB` : `${c.size} B`;
    lines.push(
      `| ${c.transport === 'zmq' ? 'push → pull (ZeroMQ)' : 'rdma out → efa in (shm)'} | ${label} | ${c.count} | ${fmt(amo)} | ${fmt(eo)} | ${((eo * c.size) / 1e6).toFixed(0)} | ${ratio.toFixed(2)} | ${fmt(noFile)} | ${(eo / noFile).toFixed(2)} |`,
    );
    console.log(
      `${c.transport} ${label}: at-most-once ${rates['at-most-once'].map(fmt).join(' ')}; exactly-once ${rates['exactly-once'].map(fmt).join(' ')}; without file ${rates['exactly-once-no-file'].map(fmt).join(' ')} msg/s`,
    );
  }
  const table = lines.join('\n');
  console.log(`\nexactly-once vs at-most-once, medians of ${reps}\n${table}\n${ok ? 'target met' : 'TARGET MISSED'}: exactly-once ≥ 0.7 × at-most-once at 64 KiB, push → pull`);
  const dir = path.resolve(__dirname, '..', '..', 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `delivery${only ? `-${only}` : ''}${quick ? '-quick' : ''}.md`), `${table}\n`);
  if (process.argv.includes('--check') && !ok) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
