import * as fs from 'fs';
import { sampler } from '../test/faults/support';
import { ChildRuntime, startChildRuntime, tabFlow } from '../test/support/child-runtime';
import { freePort } from '../test/support/ports';

/**
 * Garbage collection while streaming (BENCHMARKS.md, "Garbage collection while streaming"): the
 * same seq-source → transport → seq-sink pair as the other benchmarks, with the runtimes started
 * under `--trace-gc`, so each run reports MB/s and how many full collections (mark-compact) and
 * young-generation collections (scavenge) each runtime ran, and what each runtime cost while it
 * streamed: CPU time of its main thread and of all its threads (the difference is libzmq's I/O
 * thread, V8's helpers, a libfabric provider's own thread), per message, and its largest resident
 * set. Settings under comparison travel in the environment, which both runtimes inherit:
 * `SPAWN_GC_PACE_MB=0` turns the receivers' pacing off (native/gc-pacer.ts), `SPAWN_GC=concurrent`
 * V8's default marking (launcher/gc-tuning.ts), `FI_*` libfabric's settings.
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

/** CPU time in ms of a process (all threads) or of one of its threads, from /proc (clock ticks of 10 ms). */
function cpuMs(pid: number, tid?: number): number {
  const st = fs.readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/**
 * Watches a runtime from before its source starts (seq-source waits a second) until the stream is
 * done: `done()` says what its main thread and all its threads spent per message, and its peak RSS.
 */
function watch(rt: ChildRuntime, count: number): { done(): string } {
  const pid = rt.proc.pid!;
  const main0 = cpuMs(pid, pid);
  const all0 = cpuMs(pid);
  const memory = sampler(pid, 50);
  return {
    done() {
      const perMessage = (ms: number) => `${((ms * 1000) / count).toFixed(0)} µs`;
      const peak = Math.max(...memory.stop().map((x) => x.rss));
      return `main thread ${perMessage(cpuMs(pid, pid) - main0)}, all threads ${perMessage(cpuMs(pid) - all0)} per message, peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB`;
    },
  };
}

async function once(o: Opts): Promise<string> {
  const source = { id: 'src', type: 'seq-source', count: o.count, size: o.size, kind: 'buffer', window: o.window, startDelay: 1000, wires: [['out']] };
  const sink = { id: 'sink', type: 'seq-sink', expect: o.count, label: 'sink' };
  if (o.transport === 'none') {
    const rt = await startChildRuntime(tabFlow('one', [{ ...source, wires: [['sink']] }, sink]), 'bench-gc-one');
    try {
      const cost = watch(rt, o.count);
      const r = await rt.waitForReport((x) => x.done, 180_000);
      return `${(r.bytes / (r.lastAt - r.firstAt) / 1000).toFixed(0)} MB/s; runtime: ${collections(rt.output())}; ${cost.done()}`;
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
    const producerCost = watch(producer, o.count);
    const consumerCost = watch(consumer, o.count);
    const r = await consumer.waitForReport((x) => x.done, 180_000);
    if (r.count !== o.count || r.outOfOrder !== 0) throw new Error(`received ${r.count} of ${o.count}, ${r.outOfOrder} out of order`);
    return [
      `${(r.bytes / (r.lastAt - r.firstAt) / 1000).toFixed(0)} MB/s`,
      `    producer: ${collections(producer.output())}; ${producerCost.done()}`,
      `    consumer: ${collections(consumer.output())}; ${consumerCost.done()}`,
    ].join('\n');
  } finally {
    await producer.stop(10_000);
    await consumer.stop(10_000);
  }
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  // The child runtimes are forked with this process's Node options.
  process.execArgv.push('--trace-gc');
  const env = Object.keys(process.env)
    .filter((k) => k === 'SPAWN_GC_PACE_MB' || k === 'SPAWN_GC' || k.startsWith('FI_'))
    .map((k) => `${k}=${process.env[k]}`);
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
