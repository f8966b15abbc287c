import * as fs from 'fs';
import * as path from 'path';
import { startChildRuntime, tabFlow } from '../test/support/child-runtime';
import { freePort } from '../test/support/ports';
import { freeUdpPort, quicIdentities } from '../test/support/quic';

/**
 * `npm run bench` (second part): exactly-once against at-most-once between two headless Node-RED
 * runtimes on 127.0.0.1, the modes interleaved in the same run; medians of the repetitions, and
 * the ratio exactly-once / at-most-once. Cases: push → pull over ZeroMQ (tcp) and over QUIC at
 * 100 B and 64 KiB, and rdma out → efa in over libfabric's shm provider at 64 KiB.
 *
 *   node dist/bench/delivery.js            full: 3 repetitions
 *   node dist/bench/delivery.js --quick    a fifth of the messages, 1 repetition
 *   --only tcp|quic|rdma                   one transport only
 *
 * A third mode, exactly-once with the receiver's watermark file off (SPAWN_DELIVERY_STATE=off on
 * the consumer: watermarks in memory only), runs in the same rounds: the ratio of exactly-once to
 * it is what keeping the watermarks across a crash costs (native/delivery/watermarks.ts).
 *
 * Timing as in bench/run.ts: the receiving seq-sink's clock at its first and its last message.
 * Every run checks that all messages arrived once and in order. Target: exactly-once keeps at
 * least 0.7 of at-most-once's throughput at 64 KiB over ZeroMQ. Results: bench/results/delivery.md.
 */

type Mode = 'at-most-once' | 'exactly-once' | 'exactly-once-no-file';
const MODES: Mode[] = ['at-most-once', 'exactly-once', 'exactly-once-no-file'];
type Transport = 'tcp' | 'quic' | 'rdma';
const TRANSPORT_LABEL: Record<Transport, string> = {
  tcp: 'push → pull (ZeroMQ)',
  quic: 'push → pull (QUIC)',
  rdma: 'rdma out → efa in (shm)',
};
interface Case {
  size: number;
  count: number;
  window: number;
  transport: Transport;
}

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const reps = quick ? 1 : 3;
const optionAt = argv.indexOf('--only') >= 0 ? argv.indexOf('--only') : argv.indexOf('--transport');
const only = optionAt >= 0 ? argv[optionAt + 1] : undefined;
if (only !== undefined && !['tcp', 'quic', 'rdma'].includes(only)) {
  console.error(`bench/delivery: --only takes tcp, quic or rdma, not "${only}"`);
  process.exit(2);
}
const small = (transport: Transport): Case => ({ size: 100, count: quick ? 200_000 : 1_000_000, window: 50_000, transport });
const large = (transport: Transport): Case => ({ size: 65536, count: quick ? 4000 : 20_000, window: 1000, transport });
const CASES: Case[] = [small('tcp'), large('tcp'), small('quic'), large('quic'), large('rdma')].filter((c) => !only || c.transport === only);

/** QUIC: one pipeline CA, a certificate directory per runtime (as the launcher makes them). */
let quicDirs: string[] | undefined;

/** The receiving and the sending node of a case. */
function ends(c: Case, delivery: 'at-most-once' | 'exactly-once', port: number) {
  if (c.transport === 'rdma') {
    return [
      { id: 'pull', type: 'spawn-efa-in', provider: 'shm', endpoints: `tcp://127.0.0.1:${port}`, delivery, wires: [['sink']] },
      { id: 'push', type: 'spawn-rdma-out', provider: 'shm', addr: '127.0.0.1', port, delivery },
    ];
  }
  const transport = c.transport;
  return [
    { id: 'pull', type: 'spawn-pull', transport, endpoints: `tcp://127.0.0.1:${port}`, delivery, wires: [['sink']] },
    { id: 'push', type: 'spawn-push', transport, addr: '127.0.0.1', port, delivery },
  ];
}

async function run(mode: Mode, c: Case): Promise<number> {
  const quic = c.transport === 'quic';
  const port = quic ? await freeUdpPort() : await freePort();
  if (quic) quicDirs ??= quicIdentities(2, 'bench-delivery');
  const noFile = mode === 'exactly-once-no-file';
  const env = (i: number, extra: Record<string, string> = {}) => ({ env: { ...(quic ? { SPAWN_QUIC_DIR: quicDirs![i] } : {}), ...extra } });
  const [input, output] = ends(c, noFile ? 'exactly-once' : mode, port);
  const consumer = await startChildRuntime(
    tabFlow('consumer', [input, { id: 'sink', type: 'seq-sink', expect: c.count, label: 'sink' }]),
    'bench-consumer',
    env(1, noFile ? { SPAWN_DELIVERY_STATE: 'off' } : {}),
  );
  const producer = await startChildRuntime(
    tabFlow('producer', [{ id: 'src', type: 'seq-source', count: c.count, size: c.size, kind: 'buffer', window: c.window, startDelay: 1000, wires: [['push']] }, output]),
    'bench-producer',
    env(0),
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
    if (c.size === 65536 && c.transport === 'tcp' && ratio < 0.7) ok = false;
    const label = c.size >= 1024 ? `${c.size / 1024} KiB` : `${c.size} B`;
    lines.push(
      `| ${TRANSPORT_LABEL[c.transport]} | ${label} | ${c.count} | ${fmt(amo)} | ${fmt(eo)} | ${((eo * c.size) / 1e6).toFixed(0)} | ${ratio.toFixed(2)} | ${fmt(noFile)} | ${(eo / noFile).toFixed(2)} |`,
    );
    console.log(
      `${c.transport} ${label}: at-most-once ${rates['at-most-once'].map(fmt).join(' ')}; exactly-once ${rates['exactly-once'].map(fmt).join(' ')}; without file ${rates['exactly-once-no-file'].map(fmt).join(' ')} msg/s`,
    );
  }
  const table = lines.join('\n');
  console.log(`\nexactly-once vs at-most-once, medians of ${reps}\n${table}\n${ok ? 'target met' : 'TARGET MISSED'}: exactly-once ≥ 0.7 × at-most-once at 64 KiB, push → pull over ZeroMQ`);
  const dir = path.resolve(__dirname, '..', '..', 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `delivery${only ? `-${only}` : ''}${quick ? '-quick' : ''}.md`), `${table}\n`);
  if (argv.includes('--check') && !ok) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
