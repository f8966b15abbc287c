import { strict as assert } from 'assert';
import * as fs from 'fs';

/** Helpers of the fault-injection suite: process samples, sequence logs, waiting on conditions. */

/** Resident set size of a process in bytes (/proc/<pid>/status VmRSS). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Open file descriptors of a process (/proc/<pid>/fd). */
export function fdsOf(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

export interface Sample {
  at: number;
  rss: number;
  fds: number;
}

/** Samples a process every `everyMs` until stopped. */
export function sampler(pid: number, everyMs: number): { samples: Sample[]; stop(): Sample[] } {
  const samples: Sample[] = [];
  const take = () => {
    try {
      samples.push({ at: Date.now(), rss: rssOf(pid), fds: fdsOf(pid) });
    } catch {
      // the process is gone; the test notices that itself
    }
  };
  take();
  const t = setInterval(take, everyMs);
  return {
    samples,
    stop() {
      clearInterval(t);
      take();
      return samples;
    },
  };
}

/**
 * Growth after warm-up: the peak of the last third of the run minus the peak between the warm-up
 * (the first quarter) and that last third. Peaks, not single samples: the heap grows and shrinks
 * between collections by more than any bound worth stating, but a leak raises the peaks run after run.
 */
export function growth(samples: Sample[], key: 'rss' | 'fds'): { warm: number; peak: number; growth: number } {
  const a = Math.max(1, Math.floor(samples.length / 4));
  const b = Math.max(a + 1, Math.floor((samples.length * 2) / 3));
  const warm = Math.max(...samples.slice(a, b).map((s) => s[key]));
  const peak = Math.max(...samples.slice(b).map((s) => s[key]));
  return { warm, peak, growth: peak - warm };
}

/** The sequence numbers a seq-sink wrote to its log file (u32 LE each). */
export function readSeqLog(file: string): number[] {
  if (!fs.existsSync(file)) return [];
  const b = fs.readFileSync(file);
  const out: number[] = [];
  for (let at = 0; at + 4 <= b.length; at += 4) out.push(b.readUInt32LE(at));
  return out;
}

export async function waitUntil(what: string, cond: () => boolean, ms: number, everyMs = 50): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Milliseconds from an environment variable, else the default (the CI run uses the defaults). */
export function msFromEnv(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

/** In order and without repeats: strictly increasing. */
export function strictlyIncreasing(list: number[]): boolean {
  for (let i = 1; i < list.length; i++) if (list[i] <= list[i - 1]) return false;
  return true;
}

/**
 * A consumer SIGKILLed mid-stream (its log: `seenA`) and its successor (`seenB`), restarted with its
 * user directory: each saw its share in order; all `n` arrived, in order, none lost; and nothing came
 * twice but, at most, the killed one's very last message (the sink wrote it and was killed before
 * its done(): the one window no delivery layer closes; see restarts.fault.ts). Returns the repeats.
 */
export function assertOnceAcrossRestart(seenA: number[], seenB: number[], n: number): number[] {
  assert.ok(strictlyIncreasing(seenA), 'the killed consumer saw its share in order, once');
  assert.ok(strictlyIncreasing(seenB), 'the restarted consumer saw its share in order, once');
  const inB = new Set(seenB);
  const again = seenA.filter((s) => inB.has(s));
  console.log(`      killed instance: ${seenA.length}, restarted: ${seenB.length}, finished by both: ${again.length}`);
  assert.ok(again.length === 0 || (again.length === 1 && again[0] === seenA[seenA.length - 1]), `finished twice: ${JSON.stringify(again)}`);
  assert.deepEqual([...seenA, ...seenB.slice(again.length)], Array.from({ length: n }, (_, i) => i), 'all N, in order, none lost');
  return again;
}
