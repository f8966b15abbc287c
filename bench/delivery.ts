import * as fs from 'fs';
import * as path from 'path';
import { startChildRuntime, tabFlow } from '../test/support/child-runtime';
import { freePort } from '../test/support/ports';
import { freeUdpPort, quicIdentities } from '../test/support/quic';

/**
 * `npm run bench` (second part): exactly-once against at-most-once, spawn-red push → pull between
 * two headless Node-RED runtimes on 127.0.0.1, 100 B and 64 KiB payloads, the two modes
 * interleaved in the same run; medians of the repetitions, and the ratio exactly-once / at-most-once.
 *
 *   node dist/bench/delivery.js            full: 3 repetitions, over tcp (ZeroMQ) and quic
 *   node dist/bench/delivery.js --quick    a fifth of the messages, 1 repetition
 *   --transport tcp|quic                   one transport only (default both, tcp first)
 *
 * Timing as in bench/run.ts: the receiving seq-sink's clock at its first and its last message.
 * Every run checks that all messages arrived once and in order. Target: exactly-once keeps at
 * least 0.7 of at-most-once's throughput at 64 KiB. Results: bench/results/delivery.md.
 */

type Mode = 'at-most-once' | 'exactly-once';
type Transport = 'tcp' | 'quic';
interface Case {
  size: number;
  count: number;
  window: number;
}

const quick = process.argv.includes('--quick');
const reps = quick ? 1 : 3;
const only = process.argv.includes('--transport') ? process.argv[process.argv.indexOf('--transport') + 1] : undefined;
const TRANSPORTS: Transport[] = only === 'tcp' || only === 'quic' ? [only] : ['tcp', 'quic'];
/** QUIC: one pipeline CA, a certificate directory per runtime (as the launcher makes them). */
let quicDirs: string[] | undefined;
const CASES: Case[] = [
  { size: 100, count: quick ? 200_000 : 1_000_000, window: 50_000 },
  { size: 65536, count: quick ? 4000 : 20_000, window: 1000 },
];

async function run(mode: Mode, c: Case, transport: Transport): Promise<number> {
  const port = transport === 'quic' ? await freeUdpPort() : await freePort();
  if (transport === 'quic') quicDirs ??= quicIdentities(2, 'bench-delivery');
  const env = (i: number) => (transport === 'quic' ? { env: { SPAWN_QUIC_DIR: quicDirs![i] } } : {});
  const consumer = await startChildRuntime(
    tabFlow('consumer', [
      { id: 'pull', type: 'spawn-pull', transport, endpoints: `tcp://127.0.0.1:${port}`, delivery: mode, wires: [['sink']] },
      { id: 'sink', type: 'seq-sink', expect: c.count, label: 'sink' },
    ]),
    'bench-consumer',
    env(1),
  );
  const producer = await startChildRuntime(
    tabFlow('producer', [
      { id: 'src', type: 'seq-source', count: c.count, size: c.size, kind: 'buffer', window: c.window, startDelay: 1000, wires: [['push']] },
      { id: 'push', type: 'spawn-push', transport, addr: '127.0.0.1', port, delivery: mode },
    ]),
    'bench-producer',
    env(0),
  );
  try {
    const r = await consumer.waitForReport((x) => x.done, 300_000);
    if (r.count !== c.count || r.outOfOrder !== 0) throw new Error(`${transport} ${mode} ${c.size} B: ${r.count} of ${c.count}, ${r.outOfOrder} out of order (${r.firstProblem})`);
    return r.count / ((r.lastAt - r.firstAt) / 1000);
  } finally {
    await producer.stop(10_000);
    await consumer.stop(10_000);
  }
}

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (n: number) => (n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0));

async function main(): Promise<void> {
  const lines = ['| transport | payload | messages | at-most-once msg/s | exactly-once msg/s | exactly-once MB/s | ratio |', '|---|---|---|---|---|---|---|'];
  let ok = true;
  for (const transport of TRANSPORTS) {
    for (const c of CASES) {
      const rates: Record<Mode, number[]> = { 'at-most-once': [], 'exactly-once': [] };
      for (let i = 0; i < reps; i++) {
        for (const mode of ['at-most-once', 'exactly-once'] as const) rates[mode].push(await run(mode, c, transport));
      }
      const amo = median(rates['at-most-once']);
      const eo = median(rates['exactly-once']);
      const ratio = eo / amo;
      if (c.size === 65536 && ratio < 0.7) ok = false;
      const label = c.size >= 1024 ? `${c.size / 1024} KiB` : `${c.size} B`;
      lines.push(`| ${transport} | ${label} | ${c.count} | ${fmt(amo)} | ${fmt(eo)} | ${((eo * c.size) / 1e6).toFixed(0)} | ${ratio.toFixed(2)} |`);
      console.log(`${transport} ${label}: at-most-once ${rates['at-most-once'].map(fmt).join(' ')}; exactly-once ${rates['exactly-once'].map(fmt).join(' ')} msg/s`);
    }
  }
  const table = lines.join('\n');
  console.log(`\nexactly-once vs at-most-once, push → pull, medians of ${reps}\n${table}\n${ok ? 'target met' : 'TARGET MISSED'}: exactly-once ≥ 0.7 × at-most-once at 64 KiB`);
  const dir = path.resolve(__dirname, '..', '..', 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const suffix = only ? `-${only}` : '';
  fs.writeFileSync(path.join(dir, `${quick ? 'delivery-quick' : 'delivery'}${suffix}.md`), `${table}\n`);
  if (process.argv.includes('--check') && !ok) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
