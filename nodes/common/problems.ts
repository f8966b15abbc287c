import type { Node } from 'node-red';
import { StreamError } from '../../native/errors';

/**
 * Turns transport problems into Node-RED errors a Catch node receives (msg.code is the stable
 * code, msg.payload the text). A peer flooding garbage must not flood the log: each code is
 * reported at once, then at most once a second with a count of what was held back.
 */
export class ProblemReporter {
  private held = new Map<string, { count: number; last: StreamError }>();
  private lastAt = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly node: Node,
    private readonly intervalMs = 1000,
  ) {}

  report(err: StreamError): void {
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
    this.node.error(text, { payload: text, code: err.code });
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.held.clear();
  }
}
