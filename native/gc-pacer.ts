import * as v8 from 'v8';
import * as vm from 'vm';

/**
 * Keeps streaming large payloads from making V8 mark the whole heap over and over.
 *
 * Payload bytes live outside V8's heap (Buffers from zeromq.js, libfabric, sockets), and V8 counts
 * them as external memory: each time that grows by ~64 MB since the last full collection, it starts
 * one (mark-compact), which walks every live object. A bare Node process has ~3 MB of them; a
 * Node-RED runtime ~30 MB (its modules, registry and catalogs). At 1 GB/s that is a full
 * collection every ~60 ms, each costing tens of milliseconds: measured, the receiving runtime
 * spent about half its main thread marking (`perf`: IncrementalMarking::AdvanceOnAllocation from
 * napi_adjust_external_memory), and raw zeromq.js given a 74 MB live heap fell from 1.0 to 0.6 GB/s.
 *
 * Payloads a stream has passed on usually die young, and a young-generation collection
 * (scavenge) frees their external memory for a cost proportional to the few young objects still
 * alive (0.1–0.7 ms), not to the heap. So every PACE bytes a stream receives we run one; the same raw
 * zeromq.js receiver then went back to 1.2–1.4 GB/s with one mark-compact instead of 37.
 *
 * `SPAWN_GC_PACE_MB` sets the pace (default 16 MB; 0 turns pacing off). launcher/gc-tuning.ts
 * does the other half: V8's own early starts of full collections.
 */

const DEFAULT_PACE_MB = 16;

/**
 * A receive loop yields to the event loop at least every this many bytes: what it hands on before
 * a yield waits in Node-RED's queue, and payloads that wait through two young-generation
 * collections are promoted to the old generation, where only a full collection frees them.
 */
export const RECEIVE_YIELD_BYTES = 2 * 2 ** 20;

/** V8's collector as `--expose-gc` gives it: a full collection by default, a young one on request. */
export type Collector = (opts?: { type: 'minor' | 'major' }) => void;

const paceBytes = (() => {
  const text = process.env.SPAWN_GC_PACE_MB;
  const mb = text === undefined || text === '' ? DEFAULT_PACE_MB : Number(text);
  return Number.isFinite(mb) && mb > 0 ? mb * 2 ** 20 : 0;
})();

/** The pace in bytes (0: off). */
export function gcPaceBytes(): number {
  return paceBytes;
}

let streamed = 0;
/** undefined until first needed; null when this Node cannot collect on request. */
let gc: Collector | null | undefined;

/** V8's collector, looked up once; null when this Node cannot collect on request. */
export function collector(): Collector | null {
  if (gc === undefined) gc = lookUpGc();
  return gc;
}

/**
 * Count bytes a stream received; runs a young-generation collection every PACE bytes. Only
 * receivers pace: a sender's payloads were made upstream and are held until the transport has
 * taken them (a producer's window of 64 MB outlives any useful pace), so collecting there only
 * added work (1 MiB push → pull: 610–690 MB/s pacing the sender too, 760–820 without). Measured
 * again once the sender no longer kept sent payloads (fifth session): no gain either (shm
 * 1,255–1,417 MB/s pacing the sender, 1,271–1,472 without).
 */
export function paceStreamedBytes(bytes: number): void {
  if (paceBytes === 0) return;
  streamed += bytes;
  if (streamed < paceBytes) return;
  streamed = 0;
  collector()?.({ type: 'minor' });
}

function lookUpGc(): Collector | null {
  const exposed = (globalThis as { gc?: unknown }).gc;
  if (typeof exposed === 'function') return exposed as Collector;
  try {
    // The documented way to reach gc() without a command-line flag: expose it, then take it
    // from a fresh context (the flag only affects contexts created after it is set).
    v8.setFlagsFromString('--expose-gc');
    const fn = vm.runInNewContext('gc') as unknown;
    // Not into the contexts made later (Node-RED's function nodes get one each).
    v8.setFlagsFromString('--no-expose-gc');
    return typeof fn === 'function' ? (fn as Collector) : null;
  } catch {
    return null;
  }
}
