import type { Node, NodeAPI } from 'node-red';

/**
 * Exactly-once receivers acknowledge a message when the nodes it was sent to are done with it
 * (they called done(): Node-RED's onComplete hook), not when it was merely handed over, so that a
 * receiver killed mid-stream has acknowledged nothing it had not finished.
 *
 * A node wired to nothing acknowledges at once. A message that no node finishes within
 * `FALLBACK_MS` (a node that holds messages, or an old node that never completes them) is
 * acknowledged then anyway, so one such node cannot stall the pipeline for good.
 */

const FALLBACK_MS = 10_000;

export interface Completion {
  /** Called for each message sent on; `done` runs once the message is complete. */
  track(msgId: string, done: () => void): void;
  stop(): void;
}

/** Undefined when the runtime has no hooks (Node-RED before 2, or a test harness): then messages are acknowledged when handed over. */
export function trackCompletion(RED: NodeAPI, node: Node, wires: unknown): Completion | undefined {
  if (!(RED as { hooks?: unknown }).hooks) return undefined;
  const wired = new Set(Array.isArray(wires) ? (wires as unknown[]).flat().map(String) : []);
  const targets = Array.isArray(wires) ? (wires as unknown[]).flat().length : 0;
  if (targets === 0) return { track: (_id, done) => done(), stop: () => undefined };
  const waiting = new Map<string, { done: () => void; left: number; at: number }>();
  const hook = `onComplete.spawnack${node.id.replace(/[^A-Za-z0-9]/g, '')}`;
  RED.hooks.add(hook, (ev: { msg?: { _msgid?: string }; node?: { id?: string } }) => {
    const id = ev.msg?._msgid;
    // Only the wired nodes count: a node further downstream completes the same _msgid too, and
    // would otherwise stand in for a wired node that has not finished.
    if (id === undefined || (ev.node?.id !== undefined && !wired.has(ev.node.id))) return;
    const w = waiting.get(id);
    if (!w || --w.left > 0) return;
    waiting.delete(id);
    w.done();
  });
  const sweep = setInterval(() => {
    const old = Date.now() - FALLBACK_MS;
    for (const [id, w] of waiting) {
      if (w.at > old) break; // insertion order: the rest are younger
      waiting.delete(id);
      w.done();
    }
  }, 1000);
  sweep.unref();
  return {
    track(msgId, done) {
      waiting.set(msgId, { done, left: targets, at: Date.now() });
    },
    stop() {
      clearInterval(sweep);
      RED.hooks.remove(hook);
      waiting.clear();
    },
  };
}
