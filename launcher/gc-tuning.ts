import * as v8 from 'v8';

/**
 * Garbage-collector settings for headless stage runtimes.
 *
 * A streaming stage allocates payload Buffers whose bytes live outside V8's heap. Every few tens
 * of MB of them V8 starts a full mark of the heap, and a Node-RED heap (~15 MB) costs several
 * times what a bare script's does to mark. By default V8 marks on helper threads concurrently:
 * on a small instance those threads take the cores that the stage's own thread and libzmq's I/O
 * thread need, and throughput at 64 KiB–1 MiB halves (BENCHMARKS.md). Marking incrementally on
 * the main thread instead costs less in total.
 *
 * `--no-concurrent-marking` cannot be given in NODE_OPTIONS, so it is set here, before the runtime
 * loads; V8 reads the flag each time a marking cycle starts. SPAWN_GC=default keeps V8's defaults.
 */
export function tuneGcForStreaming(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.SPAWN_GC === 'default') return false;
  v8.setFlagsFromString('--no-concurrent-marking');
  return true;
}
