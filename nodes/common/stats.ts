import * as fs from 'fs';
import type { StreamStats } from '../../native/zmq';

/**
 * Per-process message counters for the launcher's status display. When SPAWN_STATS_FILE is set
 * (the local launcher sets it for each instance), every transport node's counters are written
 * there once a second as JSON: { pid, at, nodes: { <node id>: { pattern, peers, sent/received
 * messages and bytes, queued, sentPerSecond, receivedPerSecond } } }.
 * Written to a temporary file and renamed, so a reader never sees half a file.
 */
type Source = { pattern: string; peers: () => number; stats: () => StreamStats };

const sources = new Map<string, Source>();
let timer: NodeJS.Timeout | undefined;
/** Previous totals, for the rates (messages per second since the last write). */
const previous = new Map<string, { at: number; sent: number; received: number }>();

function write(file: string): void {
  const nodes: Record<string, unknown> = {};
  const now = Date.now();
  for (const [id, s] of sources) {
    const st = s.stats();
    const before = previous.get(id);
    const secs = before ? Math.max(0.001, (now - before.at) / 1000) : 0;
    const rates = before
      ? { sentPerSecond: Math.round((st.sentMessages - before.sent) / secs), receivedPerSecond: Math.round((st.receivedMessages - before.received) / secs) }
      : { sentPerSecond: 0, receivedPerSecond: 0 };
    previous.set(id, { at: now, sent: st.sentMessages, received: st.receivedMessages });
    nodes[id] = { pattern: s.pattern, peers: s.peers(), ...st, ...rates };
  }
  const tmp = `${file}.tmp`;
  try {
    fs.writeFileSync(tmp, JSON.stringify({ pid: process.pid, at: Date.now(), nodes }));
    fs.renameSync(tmp, file);
  } catch {
    // The instance directory went away (pipeline removed): nothing to report to.
  }
}

export function registerStats(id: string, source: Source): () => void {
  const file = process.env.SPAWN_STATS_FILE;
  if (!file) return () => undefined;
  sources.set(id, source);
  timer ??= setInterval(() => write(file), 1000).unref();
  return () => {
    sources.delete(id);
    previous.delete(id);
    write(file);
    if (sources.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };
}
