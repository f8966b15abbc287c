import * as os from 'os';
import * as v8 from 'v8';
import { Pattern, RECEIVES } from '../native/patterns';

/**
 * Garbage-collector settings for headless stage runtimes.
 *
 * A streaming stage allocates payload Buffers whose bytes live outside V8's heap. Every few tens
 * of MB of them V8 starts a full mark of the heap, and a Node-RED heap (~15 MB) costs several
 * times what a bare script's does to mark. By default V8 marks on helper threads concurrently: on
 * a machine with few cores those threads take the cores that the stage's own thread and libzmq's
 * I/O thread need, and throughput at 64 KiB–1 MiB halved (BENCHMARKS.md). Marking incrementally
 * on the main thread costs less in total there. With many cores the helper threads are free
 * capacity, and V8's default is the better one.
 *
 * Incremental marking goes too in that mode, in stages that receive (a pull, sub, dealer, router
 * or efa in). V8 starts an incremental mark whenever the old generation's headroom is smaller than the young generation
 * (16 MB semi-spaces), and a Node-RED heap of ~20 MB gets ~24 MB of headroom: a receiving runtime
 * marked its whole heap every ~60 ms while streaming 64 KiB payloads over ZeroMQ, though almost
 * nothing in it was garbage. Without incremental marking V8 runs a full collection only when a
 * limit is really reached; with the young-generation collections of native/gc-pacer.ts freeing
 * the payloads, that receiver went from ~60 full collections to 1–4 per 60,000 messages and
 * push → pull from 940–1,040 to 1,020–1,180 MB/s (BENCHMARKS.md). The price is one pause
 * (20–30 ms for a stage runtime's heap) per full collection instead of many small steps. The efa
 * in got there once it copied its payloads out of its receive buffers and received in steps of a
 * few MB (native/fabric/stream.ts): 1 full collection per 30,000 × 64 KiB instead of 30–40.
 * A stage that only sends holds its payloads until the transport took them (a producer's window
 * outlives young collections), so it needs full collections too, and V8 schedules fewer of them
 * incrementally: push → pull with the producer keeping incremental marking ran 0.86–0.91× of raw
 * zeromq.js at 1 MiB and 0.95–1.05× at 64 KiB, against 0.82–0.84× and 0.71–0.87× without.
 * Measured again once the sender stopped keeping sent payloads (fifth session, MB/s, 3 runs
 * each): without incremental marking in the producer 1,369–1,467 at 1 MiB and 886–960 at
 * 64 KiB, with it 1,368–1,538 and 955–1,087.
 *
 * Neither flag can be given in NODE_OPTIONS, so both are set here, before the runtime loads; V8
 * reads them each time a marking cycle starts.
 */

export type GcMode = 'main-thread' | 'concurrent';

/** Up to this many cores, marking on the main thread wins (measured on 2 cores). */
export const MAIN_THREAD_MARKING_MAX_CORES = 4;

/** SPAWN_GC=main-thread|concurrent decides; unset, the machine's core count does. */
export function gcModeFor(env: NodeJS.ProcessEnv, cores: number): GcMode {
  const asked = env.SPAWN_GC;
  if (asked === 'main-thread' || asked === 'concurrent') return asked;
  if (asked !== undefined && asked !== '') {
    throw new Error(`SPAWN_GC must be main-thread or concurrent, not "${asked}"`);
  }
  return cores <= MAIN_THREAD_MARKING_MAX_CORES ? 'main-thread' : 'concurrent';
}

/** The receiving nodes: they pace young collections (native/gc-pacer.ts). */
const RECEIVING_TYPES = new Set([
  ...(Object.keys(RECEIVES) as Pattern[]).filter((p) => RECEIVES[p]).map((p) => `spawn-${p}`),
  'spawn-efa-in',
]);

/** The V8 flags for a stage: `nodeTypes` are the types of the nodes it runs. */
export function gcFlagsFor(mode: GcMode, nodeTypes: Iterable<string>): string[] {
  if (mode === 'concurrent') return [];
  for (const t of nodeTypes) if (RECEIVING_TYPES.has(t)) return ['--no-concurrent-marking', '--no-incremental-marking'];
  return ['--no-concurrent-marking'];
}

export function tuneGcForStreaming(nodeTypes: Iterable<string>, env: NodeJS.ProcessEnv = process.env): GcMode {
  const mode = gcModeFor(env, os.availableParallelism());
  for (const flag of gcFlagsFor(mode, nodeTypes)) v8.setFlagsFromString(flag);
  return mode;
}
