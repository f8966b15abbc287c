/**
 * Drives a fabric endpoint's progress from the event loop without blocking it.
 *
 * libfabric makes no progress unless its completion queue is read, so someone must poll. Each
 * turn runs `step` (a bounded amount of work) and yields: while work keeps coming it runs again
 * on the next turn of the loop (setImmediate, so I/O and other nodes interleave); after
 * SPIN_TURNS turns without work it backs off with timers doubling from 1 ms to `idleMs` (a few
 * timer wakeups a second when idle: nothing measurable). While operations are in flight it keeps
 * turning for BUSY_SPIN_MS after the last completion: with the tcp provider bytes move only when
 * both ends poll, and a 1 ms timer per round trip would cap the rate far below the link's. `kick()` ends a back-off at once: the
 * side channel calls it when credits or a wake-up arrive, and the sender when it has data.
 */

const SPIN_TURNS = 64;
/** While operations are in flight, keep turning (no timers) this long after the last work. */
const BUSY_SPIN_MS = 10;

export class Progress {
  private immediate: NodeJS.Immediate | undefined;
  private timer: NodeJS.Timeout | undefined;
  private emptyTurns = 0;
  private lastWorkAt = 0;
  private wasIdle = false;
  private stopped = false;

  constructor(
    /** Does some work; returns how much (0: nothing happened). */
    private readonly step: () => number,
    /** Whether operations are in flight (then back off at most to BUSY_MS). */
    private readonly busy: () => boolean,
    private readonly idleMs = 50,
    private readonly busyMs = 1,
    /** Called when it stops turning and starts backing off (the receiver tells its senders). */
    private readonly onIdle?: () => void,
    /** Keep turning for `spinMs` after the last work while busy (else only SPIN_TURNS). */
    private readonly spinWhileBusy = true,
    /** How long "after the last work" is (BUSY_SPIN_MS by default; longer over tcp, see stream.ts). */
    private readonly spinMs = BUSY_SPIN_MS,
  ) {}

  kick(): void {
    if (this.stopped || this.immediate) return;
    this.emptyTurns = 0;
    // A kick means work is coming (credits, a wake-up, data to send): give it a whole spin
    // window, and say "idle" again if it then backs off. Before, a kicked side spun only
    // SPIN_TURNS turns (well under a millisecond), then polled on 1 ms timers without telling
    // its peer, which therefore sent no more wake-ups (over tcp a 1 MiB message needs many polls
    // on both sides: see TCP_SPIN_MS in stream.ts for the slow regime this feeds).
    this.lastWorkAt = Date.now();
    this.wasIdle = false;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.immediate = setImmediate(this.run);
  }

  stop(): void {
    this.stopped = true;
    if (this.immediate) clearImmediate(this.immediate);
    if (this.timer) clearTimeout(this.timer);
    this.immediate = this.timer = undefined;
  }

  private readonly run = (): void => {
    this.immediate = this.timer = undefined;
    if (this.stopped) return;
    const work = this.step();
    if (this.stopped) return;
    const busy = this.busy();
    if (work > 0) {
      this.emptyTurns = 0;
      this.lastWorkAt = Date.now();
      this.wasIdle = false;
    } else this.emptyTurns++;
    if (this.emptyTurns < SPIN_TURNS || (busy && this.spinWhileBusy && Date.now() - this.lastWorkAt < this.spinMs)) {
      this.immediate = setImmediate(this.run);
      return;
    }
    if (!this.wasIdle) this.onIdle?.();
    this.wasIdle = true;
    const cap = busy ? this.busyMs : this.idleMs;
    const delay = Math.min(cap, 2 ** Math.min(this.emptyTurns - SPIN_TURNS, 10));
    this.timer = setTimeout(this.run, delay);
    this.timer.unref();
  };
}
