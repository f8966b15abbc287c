import * as os from 'os';
import * as v8 from 'v8';

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
 * `--no-concurrent-marking` cannot be given in NODE_OPTIONS, so it is set here, before the runtime
 * loads; V8 reads the flag each time a marking cycle starts.
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

export function tuneGcForStreaming(env: NodeJS.ProcessEnv = process.env): GcMode {
  const mode = gcModeFor(env, os.availableParallelism());
  if (mode === 'main-thread') v8.setFlagsFromString('--no-concurrent-marking');
  return mode;
}
