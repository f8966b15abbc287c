import type { EventEmitter } from 'events';
import type { Node } from 'node-red';
import { StreamError } from '../../native/errors';

/**
 * Turns transport problems into Node-RED errors a Catch node receives (msg.error.code and msg.code
 * are the stable code, msg.payload the text). A peer flooding garbage must not flood the log: each code is
 * reported at once, then at most once a second with a count of what was held back.
 *
 * Reports wait until the flows have started: Node-RED builds its map of Catch nodes only after
 * every node of the flow exists, and a node may find a problem (a bad endpoint) while being built.
 */
export class ProblemReporter {
  private held = new Map<string, { count: number; last: StreamError }>();
  private lastAt = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private early: StreamError[] | undefined = [];
  private readonly onStarted = () => this.release();
  private readonly fallback: NodeJS.Timeout;

  constructor(
    private readonly node: Node,
    private readonly runtimeEvents: EventEmitter,
    private readonly intervalMs = 1000,
  ) {
    runtimeEvents.once('flows:started', this.onStarted);
    // Under test harnesses that never announce the start, do not hold reports for long.
    this.fallback = setTimeout(this.onStarted, 2000).unref();
  }

  private release(): void {
    clearTimeout(this.fallback);
    this.runtimeEvents.off('flows:started', this.onStarted);
    const early = this.early ?? [];
    this.early = undefined;
    for (const e of early) this.report(e);
  }

  report(err: StreamError): void {
    if (this.early) {
      // Before the flows start: keep the first few (a garbage flood must not grow this).
      if (this.early.length < 100) this.early.push(err);
      return;
    }
    const now = Date.now();
    const last = this.lastAt.get(err.code) ?? 0;
    if (now - last >= this.intervalMs) {
      this.lastAt.set(err.code, now);
      this.emit(err, 0);
      return;
    }
    const h = this.held.get(err.code);
    if (h) {
      h.count++;
      h.last = err;
    } else this.held.set(err.code, { count: 1, last: err });
    this.timer ??= setTimeout(() => this.flush(), this.intervalMs).unref();
  }

  private flush(): void {
    this.timer = undefined;
    const now = Date.now();
    for (const [code, h] of this.held) {
      this.lastAt.set(code, now);
      this.emit(h.last, h.count - 1);
    }
    this.held.clear();
  }

  private emit(err: StreamError, more: number): void {
    const text = more > 0 ? `${err.message} (and ${more} more like it)` : err.message;
    // Catch nodes get msg.error.code (as for errors about a message) and msg.code/msg.payload.
    this.node.error(new StreamError(err.code, text), { payload: text, code: err.code });
  }

  stop(): void {
    this.early = undefined;
    clearTimeout(this.fallback);
    this.runtimeEvents.off('flows:started', this.onStarted);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    // What was held back is still said once: a problem of the close itself comes last.
    if (this.held.size > 0) this.flush();
  }
}
