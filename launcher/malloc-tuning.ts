/**
 * glibc malloc settings for headless stage runtimes.
 *
 * Node allocates a large Buffer's bytes with malloc, and V8 frees them only when a collection
 * finds the Buffer dead, tens of MB at a time. With glibc's defaults that memory does not stay:
 * a freed block at the top of the heap past the trim threshold (twice the last block size that
 * went to mmap, ~2 MB once 1 MiB payloads have been freed) is handed back to the kernel, and
 * the next payloads fault it in again, zeroed page by page. Streaming 1 MiB messages took 50–80
 * page faults per MiB that way, against 3–4 with the settings below (test/malloc-tuning), and at
 * 1 MiB push → pull ran ~15 % and rdma out → efa in over shm ~20 % faster (BENCHMARKS.md,
 * Results, sixth session).
 *
 * So stage runtimes keep up to TRIM_THRESHOLD of free memory at the top of the heap, and serve
 * blocks below MMAP_THRESHOLD from the heap (setting either one fixes glibc's sliding mmap
 * threshold, so both are set). The price is resident memory: a stage keeps what its busiest
 * moment needed, up to 256 MB more. SPAWN_MALLOC=default leaves glibc's settings alone.
 *
 * mallopt() works at any time (environment variables such as MALLOC_TRIM_THRESHOLD_ would have
 * to be set before the process starts). Where the C library is not glibc (no libc.so.6, e.g.
 * musl) nothing is changed.
 */

export type MallocMode = 'streaming' | 'default';

const M_TRIM_THRESHOLD = -1;
const M_MMAP_THRESHOLD = -3;
export const TRIM_THRESHOLD = 256 * 1024 * 1024;
/** glibc's largest allowed mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX). */
export const MMAP_THRESHOLD = 32 * 1024 * 1024;

/** SPAWN_MALLOC=streaming|default decides; unset, streaming. */
export function mallocModeFor(env: NodeJS.ProcessEnv): MallocMode {
  const asked = env.SPAWN_MALLOC;
  if (asked === undefined || asked === '' || asked === 'streaming') return 'streaming';
  if (asked === 'default') return 'default';
  throw new Error(`SPAWN_MALLOC must be streaming or default, not "${asked}"`);
}

/** Applies the streaming settings (unless SPAWN_MALLOC=default); true when glibc took them. */
export function tuneMallocForStreaming(env: NodeJS.ProcessEnv = process.env): boolean {
  if (mallocModeFor(env) === 'default' || process.platform !== 'linux') return false;
  let mallopt: (param: number, value: number) => number;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const koffi = require('koffi') as typeof import('koffi');
    mallopt = koffi.load('libc.so.6').func('int mallopt(int param, int value)') as typeof mallopt;
  } catch {
    return false; // not glibc
  }
  // mallopt returns 1 on success.
  return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) === 1 && mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) === 1;
}
