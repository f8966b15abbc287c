import { startChildRuntime, tabFlow } from '../test/support/child-runtime';
import { freePort } from '../test/support/ports';

/**
 * Garbage collection while streaming (BENCHMARKS.md, "Garbage collection while streaming"): the
 * same seq-source → transport → seq-sink pair as the other benchmarks, with the runtimes started
 * under `--trace-gc`, so each run reports MB/s and how many full collections (mark-compact) and
 * young-generation collections (scavenge) each runtime ran. Settings under comparison travel in
 * the environment, which both runtimes inherit: `SPAWN_GC_PACE_MB=0` turns the receivers'
 * pacing off (native/gc-pacer.ts), `SPAWN_GC=concurrent` V8's default marking (launcher/gc-tuning.ts).
 *
 *   node dist/bench/gc.js [--transport zmq|shm|tcp|none] [--size 65536] [--count 30000] [--window 1000] [--reps 1]
 *   SPAWN_GC_PACE_MB=0 node dist/bench/gc.js ...
 *
 * `--transport none` is the ceiling: source and sink wired together in one runtime.
 */

interface Opts {
  transport: 'zmq' | 'shm' | 'tcp' | 'none';
  size: number;
  count: number;
  window: number;
  reps: number;
}

function parse(argv: string[]): Opts {
  const o: Opts = { transport: 'zmq', size: 65536, count: 30_000, window: 1000, reps: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (a === '--transport' && ['zmq', 'shm', 'tcp', 'none'].includes(v)) o.transport = v as Opts['transport'];
    else if (a === '--size') o.size = Number(v);
    else if (a === '--count') o.count = Number(v);
    else if (a === '--window') o.window = Number(v);
    else if (a === '--reps') o.reps = Number(v);
    else throw new Error(`unknown option ${a} ${v ?? ''}; known: --transport zmq|shm|tcp|none --size N --count N --window N --reps N`);
  }
  return o;
}

const collections = (log: string) => `${(log.match(/Mark-Compact/g) ?? []).length} full, ${(log.match(/Scavenge/g) ?? []).length} young`;

async function once(o: Opts): Promise<string> {
  const source = { id: 'src', type: 'seq-source', count: o.count, size: o.size, kind: 'buffer', window: o.window, startDelay: 1000, wires: [['out']] };
  const sink = { id: 'sink', type: 'seq-sink', expect: o.count, label: 'sink' };
  if (o.transport === 'none') {
    const rt = await startChildRuntime(tabFlow('one', [{ ...source, wires: [['sink']] }, sink]), 'bench-gc-one');
    try {
      const r = await rt.waitForReport((x) => x.done, 180_000);
      return `${(r.bytes / (r.lastAt - r.firstAt) / 1000).toFixed(0)} MB/s; runtime: ${collections(rt.output())}`;
    } finally {
      await rt.stop(10_000);
    }
  }
  const port = await freePort();
  const zmq = o.transport === 'zmq';
  const out = zmq ? { id: 'out', type: 'spawn-push', addr: '127.0.0.1', port } : { id: 'out', type: 'spawn-rdma-out', provider: o.transport, addr: '127.0.0.1', port };
  const inn = zmq
    ? { id: 'in', type: 'spawn-pull', endpoints: `tcp://127.0.0.1:${port}`, wires: [['sink']] }
    : { id: 'in', type: 'spawn-efa-in', provider: o.transport, endpoints: `tcp://127.0.0.1:${port}`, wires: [['sink']] };
  const consumer = await startChildRuntime(tabFlow('consumer', [inn, sink]), 'bench-gc-consumer');
  const producer = await startChildRuntime(tabFlow('producer', [source, out]), 'bench-gc-producer').catch(async (e) => {
    await consumer.stop(10_000);
    throw e;
  });
  try {
    const r = await consumer.waitForReport((x) => x.done, 180_000);
    if (r.count !== o.count || r.outOfOrder !== 0) throw new Error(`received ${r.count} of ${o.count}, ${r.outOfOrder} out of order`);
    return `${(r.bytes / (r.lastAt - r.firstAt) / 1000).toFixed(0)} MB/s; producer: ${collections(producer.output())}; consumer: ${collections(consumer.output())}`;
  } finally {
    await producer.stop(10_000);
    await consumer.stop(10_000);
  }
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  // The child runtimes are forked with this process's Node options.
  process.execArgv.push('--trace-gc');
  const env = ['SPAWN_GC_PACE_MB', 'SPAWN_GC'].filter((k) => process.env[k] !== undefined).map((k) => `${k}=${process.env[k]}`);
  console.log(`gc bench: ${o.transport}, ${o.count} × ${o.size} B, window ${o.window}${env.length ? `, ${env.join(' ')}` : ''}`);
  for (let rep = 1; rep <= o.reps; rep++) console.log(`  rep ${rep}: ${await once(o)}`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`bench failed: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
