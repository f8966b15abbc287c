import { describeKey } from '../describe-key';
import { StreamError } from '../errors';
import { decodeHeader, DeliveryError, encodeHeader, Header, Kind, randomId } from './protocol';

/**
 * Exactly-once, in-order delivery over any transport that carries frame sets both ways between
 * this stream and each of its peers ("links"). The transport only moves frames and names links;
 * everything else is here, so ZeroMQ, QUIC and RDMA share one implementation:
 *
 * Sending: every frame set the Sender hands over (native/sender.ts: a message, a batch, or several
 * detached large messages) gets a delivery header with the link's session id and sequence number
 * and stays in the window until the receiver acknowledges it. The window is bounded in frame sets
 * and bytes; while it is full, transmit() does not resolve, so the Sender's queue, its high-water
 * mark, done() and the queue limit apply backpressure exactly as they do for a slow peer today.
 *
 * Receiving: per sender session the next expected sequence number. Duplicates (resends of what was
 * delivered) are dropped, a gap asks for a resend, and acknowledgements are cumulative and batched:
 * at most one per link every ACK_EVERY_MS during a burst, and one when it ends. With `ackOnDone` a
 * message counts once the application is done with it, else once it was handed over.
 *
 * Failures: each side beats every `beatMs` with its epoch (random per process start). A new epoch
 * on a link means the peer restarted: everything not acknowledged is sent again, and the new
 * receiver, knowing nothing of the session, starts at the header's `base`. A link silent for
 * `deadMs` is down; what it holds goes to another live link (another instance of the stage) with
 * new sequence numbers, and `base` tells the old receiver, should it return, to skip them.
 *
 * Crashes: with a `watermarks` store (./watermarks.ts) the receiver records, synchronously as each
 * session's completed watermark advances, what it has finished; restarted, it starts every session
 * it knows at that watermark. So what a killed receiver finished but had not acknowledged yet is
 * dropped and acknowledged when the sender resends it, on the same session (the peer's new epoch)
 * or, after a fail-over, on a new one: moved frame sets name their original session and sequence.
 */

export interface LinkIo {
  /** Send a frame set on a link; the transport adds its addressing. Rejects when the link is unreachable. */
  send(link: string, frames: Buffer[], control: boolean): Promise<void>;
  /**
   * A delivered frame set (delivery header removed); its first `skip` messages were delivered before.
   * With `ackOnDone`, `done(i)` must be called once for each message i ≥ skip when its handling is
   * complete (or it was refused or undecodable): acknowledgements wait for it.
   */
  deliver(link: Link, frames: Buffer[], skip: number, count: number, done: ((i: number) => void) | undefined): void;
  problem(err: StreamError): void;
  /** The number of live links changed. */
  peers(n: number): void;
}

export interface DeliveryOptions {
  /** Frame sets in flight (sent, not acknowledged) at most, over all links. */
  windowFrames: number;
  /** Bytes in flight at most, over all links (a single larger frame set still goes, alone). */
  windowBytes: number;
  beatMs: number;
  /** A link silent this long is down; its unacknowledged messages go to another link. */
  deadMs: number;
  /** The Sender puts the target link's id first (router replies): no round-robin, no failover. */
  addressed: boolean;
  /** Messages in a frame set as the Sender made it (after the address frame, if any). */
  count(frames: Buffer[]): number;
  /**
   * Acknowledge a message only once the receiving application says it is done with it (Node-RED:
   * the nodes it was sent to called done()); otherwise as soon as it was handed over. With it, a
   * receiver killed mid-stream has acknowledged nothing it had not finished, so its successor gets
   * exactly what it did not finish.
   */
  ackOnDone?: boolean;
  /**
   * With ackOnDone: messages delivered and not yet done above which canReceive() is false, so the
   * transport stops reading (a middle stage's pull then cannot outrun its push: upstream windows
   * fill and backpressure reaches the source instead of the push's queue limit refusing messages).
   */
  maxUndone?: { messages: number; bytes: number };
  /** Where completed watermarks outlive the process (see the class comment); none: in memory only. */
  watermarks?: WatermarkStore;
}

/** The receiver's persistent completed watermarks, per sender session (./watermarks.ts WatermarkFile). */
export interface WatermarkStore {
  /** What a previous run of this receiver had completed. */
  restored(): Array<{ session: Buffer; done: number }>;
  /** Everything of `session` below `done` is complete; synchronous, before the acknowledgement is queued. */
  write(session: Buffer, done: number): void;
}

interface Outgoing {
  seq: number;
  count: number;
  /** Messages at its start already acknowledged (cumulative acknowledgements may end inside a frame set). */
  acked: number;
  bytes: number;
  frames: Buffer[];
  /** The session and sequence number it was first sent with (they change when a fail-over moves it). */
  origin: Buffer;
  originSeq: number;
}

interface SessionState {
  /** Next sequence number to deliver. */
  expect: number;
  /** Everything below is done (acknowledged, or to be). */
  done: number;
  /** Done out of order, above `done`. */
  completed: Set<number>;
  gapFrom: number;
  gapAt: number;
}

export class Link {
  /** Heard from within deadMs. */
  up = false;
  lastHeard = 0;
  /** The peer's epoch as last beaten: a change means it restarted. */
  epoch: string | undefined;
  /** Sending half: this link's session, next sequence number and what awaits acknowledgement. */
  readonly session = randomId();
  next = 0;
  unacked: Outgoing[] = [];
  resentFrom = -1;
  resentAt = 0;
  /** Receiving half: sessions with an acknowledgement due. */
  readonly ackDue = new Map<string, { id: Buffer; st: SessionState }>();

  constructor(
    readonly key: string,
    /** The id the application sees (router: msg.identity). */
    readonly id: Buffer,
    /** Known to the transport without being heard from (a connect endpoint): kept when down. */
    readonly fixed: boolean,
  ) {}

  get base(): number {
    return this.unacked.length > 0 ? this.unacked[0].seq + this.unacked[0].acked : this.next;
  }
}

const MAX_SESSIONS = 4096;
/** Within a burst of deliveries, acknowledgements go out at least this often. */
const ACK_EVERY_MS = 2;

export class DeliveryEngine {
  readonly epoch = randomId();
  private readonly links = new Map<string, Link>();
  /** The same links by the id the application sees (router replies name it in msg.identity). */
  private readonly byId = new Map<string, Link>();
  private readonly sessions = new Map<string, SessionState>();
  private framesInFlight = 0;
  private bytesInFlight = 0;
  private waiters: Array<() => void> = [];
  private rr = 0;
  private livePeers = 0;
  private closed = false;
  private ackScheduled = false;
  private undone = 0;
  private undoneBytes = 0;
  private receiveWaiters: Array<() => void> = [];
  private lastAckAt = 0;
  private readonly timer: NodeJS.Timeout;
  redelivered = 0;
  duplicates = 0;
  private persistFailed: string | undefined;

  constructor(
    private readonly opts: DeliveryOptions,
    private readonly io: LinkIo,
  ) {
    this.timer = setInterval(() => this.tick(), opts.beatMs);
    this.timer.unref();
    for (const r of opts.watermarks?.restored() ?? []) this.session(r.session.toString('latin1'), r.done);
  }

  get peers(): number {
    return this.livePeers;
  }

  /** Messages sent and not yet acknowledged. */
  get inFlight(): number {
    let n = 0;
    for (const l of this.links.values()) for (const e of l.unacked) n += e.count;
    return n;
  }

  /** When a link last brought a well-formed frame set (ms since the epoch); undefined for a link never heard or forgotten. */
  heardAt(key: string): number | undefined {
    const t = this.links.get(key)?.lastHeard;
    return t ? t : undefined;
  }

  /** A link the transport knows before hearing from it (a connect endpoint): beats start at once. */
  addLink(key: string, id: Buffer): Link {
    let link = this.links.get(key);
    if (!link) {
      link = new Link(key, id, true);
      this.links.set(key, link);
      this.byId.set(id.toString('latin1'), link);
      this.beat(link);
    }
    return link;
  }

  /** A frame set from a link, transport addressing removed. */
  receive(key: string, id: Buffer, frames: Buffer[]): void {
    if (this.closed) return;
    let h: Header;
    try {
      h = decodeHeader(frames[0]);
    } catch (e) {
      this.io.problem(new StreamError('EBADFRAME', `dropped a malformed message from ${describeKey(id)}: ${(e as DeliveryError).message}`));
      return;
    }
    let link = this.links.get(key);
    if (!link) {
      link = new Link(key, Buffer.from(id), false);
      this.links.set(key, link);
      this.byId.set(id.toString('latin1'), link);
    }
    link.lastHeard = Date.now();
    // Only a peer that beats is sent data: a socket that merely got through the ZeroMQ handshake and
    // sent something (garbage, or a stray frame) must not take a share of the stream.
    if (!link.up && h.kind === Kind.Beat) {
      link.up = true;
      this.countPeers();
      this.wake();
      // Back in time: whatever it holds goes again, on this link, from where the peer stands.
      if (link.unacked.length > 0) {
        link.resentFrom = -1;
        this.resend(link, link.base);
      }
    }
    switch (h.kind) {
      case Kind.Data:
        return this.onData(link, h, frames);
      case Kind.Ack:
      case Kind.Resend:
        return this.onAck(link, h);
      case Kind.Beat:
        return this.onBeat(link, h, frames[1]);
    }
  }

  // ---- sending ----

  /** The Sender's transmit: resolves once the frame set is in the window and handed to the transport. */
  async transmit(frames: Buffer[]): Promise<void> {
    const body = this.opts.addressed ? frames.slice(1) : frames;
    const count = this.opts.count(body);
    let bytes = 0;
    for (const f of body) bytes += f.length;
    let link: Link | undefined;
    for (;;) {
      if (this.closed) throw new StreamError('ECLOSED', 'the node is closing; message not sent');
      if (this.opts.addressed) {
        link = this.byId.get(frames[0].toString('latin1'));
        if (!link) throw new StreamError('EHOSTUNREACH', `no peer with identity ${describeKey(frames[0])} is connected`);
      } else link = this.pick();
      if (link && link.up && this.hasRoom(bytes)) break;
      await new Promise<void>((r) => this.waiters.push(r));
    }
    const entry: Outgoing = { seq: link.next, count, acked: 0, bytes, frames: body, origin: link.session, originSeq: link.next };
    link.next += count;
    link.unacked.push(entry);
    this.framesInFlight++;
    this.bytesInFlight += bytes;
    await this.sendData(link, entry);
  }

  private hasRoom(bytes: number): boolean {
    if (this.framesInFlight === 0) return true;
    return this.framesInFlight < this.opts.windowFrames && this.bytesInFlight + bytes <= this.opts.windowBytes;
  }

  /** Round-robin over live links, as a ZeroMQ push does over its peers. */
  private pick(): Link | undefined {
    const live: Link[] = [];
    for (const l of this.links.values()) if (l.up) live.push(l);
    if (live.length === 0) return undefined;
    this.rr = (this.rr + 1) % live.length;
    return live[this.rr];
  }

  private sendData(link: Link, e: Outgoing): Promise<void> {
    const moved = e.origin !== link.session;
    const head = encodeHeader(Kind.Data, link.session, e.seq, link.base, e.count, e.acked, moved ? e.origin : undefined, e.originSeq);
    // Taken by the window now: a send the transport refuses is resent when the link returns or fails over.
    return this.io.send(link.key, [head, ...e.frames], false).catch(() => undefined);
  }

  private resend(link: Link, from: number): void {
    const now = Date.now();
    if (link.resentFrom === from && now - link.resentAt < 2 * this.opts.beatMs) return;
    link.resentFrom = from;
    link.resentAt = now;
    for (const e of link.unacked) {
      if (e.seq + e.count <= from) continue;
      this.redelivered += e.count;
      void this.sendData(link, e);
    }
  }

  private onAck(link: Link, h: Header): void {
    if (!h.id.equals(link.session)) return; // an older session of this link: nothing of it is held
    // An ACK acknowledges below seq; a RESEND below base, and asks again for everything from seq.
    const upto = h.kind === Kind.Resend ? h.base : h.seq;
    let freed = 0;
    while (link.unacked.length > freed && link.unacked[freed].seq + link.unacked[freed].count <= upto) freed++;
    if (freed > 0) this.release(link, freed);
    const first = link.unacked[0];
    if (first && upto > first.seq + first.acked) first.acked = upto - first.seq;
    if (h.kind === Kind.Resend) this.resend(link, h.seq);
  }

  private onBeat(link: Link, h: Header, sessionFrame: Buffer | undefined): void {
    const epoch = h.id.toString('hex');
    const restarted = link.epoch !== undefined && link.epoch !== epoch;
    link.epoch = epoch;
    // The peer restarted: it acknowledged nothing of what is held; all of it again, from base.
    if (restarted && link.unacked.length > 0) {
      link.resentFrom = -1;
      this.resend(link, link.base);
    }
    // The peer sends to us on this link: a tail we never saw, or acknowledgements it never got.
    if (sessionFrame && sessionFrame.length === 8 && h.seq > h.base) {
      const sid = sessionFrame.toString('latin1');
      const st = this.sessions.get(sid);
      if (!st || st.expect < h.seq) this.requestResend(link, sessionFrame, st ?? this.session(sid, h.base));
      else this.queueAck(link, sessionFrame, st);
    }
  }

  // ---- receiving ----

  private session(sid: string, base: number): SessionState {
    const st: SessionState = { expect: base, done: base, completed: new Set(), gapFrom: -1, gapAt: 0 };
    this.sessions.set(sid, st);
    if (this.sessions.size > MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value as string);
    return st;
  }

  private onData(link: Link, h: Header, frames: Buffer[]): void {
    const sid = h.id.toString('latin1');
    const st = this.sessions.get(sid) ?? this.session(sid, h.base);
    // Below base the sender holds nothing: acknowledged, or given to another instance.
    if (h.base > st.expect) st.expect = h.base;
    if (h.base > st.done) {
      st.done = h.base;
      for (const q of st.completed) if (q < h.base) st.completed.delete(q);
    }
    // The first `skip` were acknowledged by another instance before a fail-over, or (a moved frame
    // set) this receiver finished them under their original session before it restarted: done, not delivered here.
    const skipped = Math.max(h.skip, h.origin ? finishedOf(this.sessions.get(h.origin.toString('latin1')), h.originSeq!, h.count) : 0);
    if (skipped > 0 && h.seq <= st.expect && st.expect < h.seq + skipped) {
      const from = st.expect;
      st.expect = h.seq + skipped;
      for (let q = Math.max(from, st.done); q < st.expect; q++) this.complete(link, Buffer.from(h.id), st, q);
    }
    const end = h.seq + h.count;
    if (end <= st.expect) {
      this.duplicates += h.count;
      this.queueAck(link, h.id, st);
      return;
    }
    if (h.seq > st.expect) {
      this.requestResend(link, h.id, st);
      return;
    }
    const skip = st.expect - h.seq;
    st.expect = end;
    if (this.opts.ackOnDone) {
      const id = Buffer.from(h.id);
      const first = h.seq;
      let bytes = 0;
      for (let i = 1; i < frames.length; i++) bytes += frames[i].length;
      const each = bytes / h.count;
      this.undone += h.count - skip;
      this.undoneBytes += each * (h.count - skip);
      this.io.deliver(link, frames.slice(1), skip, h.count, (i) => {
        this.undone--;
        this.undoneBytes -= each;
        if (this.receiveWaiters.length > 0 && this.canReceive()) {
          const w = this.receiveWaiters;
          this.receiveWaiters = [];
          for (const r of w) r();
        }
        this.complete(link, id, st, first + i);
      });
    } else {
      st.done = end;
      this.persist(h.id, end);
      this.io.deliver(link, frames.slice(1), skip, h.count, undefined);
      this.queueAck(link, h.id, st);
    }
  }

  private requestResend(link: Link, id: Buffer, st: SessionState): void {
    const now = Date.now();
    if (st.gapFrom === st.expect && now - st.gapAt < 2 * this.opts.beatMs) return;
    st.gapFrom = st.expect;
    st.gapAt = now;
    void this.io.send(link.key, [encodeHeader(Kind.Resend, id, st.expect, st.done, 0)], true).catch(() => undefined);
  }

  private complete(link: Link, id: Buffer, st: SessionState, seq: number): void {
    if (seq < st.done) return;
    if (seq !== st.done) {
      st.completed.add(seq);
      return;
    }
    st.done++;
    while (st.completed.delete(st.done)) st.done++;
    this.persist(id, st.done);
    this.queueAck(link, id, st);
  }

  /** The watermark outlives the process; a failing write (disk full) is reported once and the stream goes on. */
  private persist(id: Buffer, done: number): void {
    const store = this.opts.watermarks;
    if (!store) return;
    try {
      store.write(id, done);
      this.persistFailed = undefined;
    } catch (e) {
      const text = (e as Error).message;
      if (text === this.persistFailed) return;
      this.persistFailed = text;
      this.io.problem(new StreamError('ESTATEFILE', `${text}; messages finished since may come again once if this process crashes`));
    }
  }

  private queueAck(link: Link, id: Buffer, st: SessionState): void {
    link.ackDue.set(id.toString('latin1'), { id: Buffer.from(id), st });
    // A burst of deliveries runs as one long chain of setImmediate callbacks (Node-RED delivers each
    // message in its own): an acknowledgement scheduled behind it would wait for the whole burst, and
    // the sender's window with it. So within a burst, acknowledge every ACK_EVERY_MS inline; after
    // it, one setImmediate later.
    const now = Date.now();
    if (now - this.lastAckAt >= ACK_EVERY_MS) {
      this.flushAcks();
      return;
    }
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    setImmediate(() => this.flushAcks());
  }

  private flushAcks(): void {
    this.ackScheduled = false;
    this.lastAckAt = Date.now();
    for (const link of this.links.values()) {
      if (link.ackDue.size === 0) continue;
      for (const { id, st } of link.ackDue.values()) {
        void this.io.send(link.key, [encodeHeader(Kind.Ack, id, st.done, 0, 0)], true).catch(() => undefined);
      }
      link.ackDue.clear();
    }
  }

  /** False while too many delivered messages are not done yet (see DeliveryOptions.maxUndone). */
  canReceive(): boolean {
    const max = this.opts.maxUndone;
    return !max || this.closed || (this.undone < max.messages && this.undoneBytes < max.bytes);
  }

  whenCanReceive(): Promise<void> {
    return this.canReceive() ? Promise.resolve() : new Promise((r) => this.receiveWaiters.push(r));
  }

  // ---- liveness ----

  private beat(link: Link): void {
    const head = encodeHeader(Kind.Beat, this.epoch, link.next, link.base, 0);
    const frames = link.next > 0 ? [head, link.session] : [head];
    void this.io.send(link.key, frames, true).catch(() => undefined);
  }

  private tick(): void {
    if (this.closed) return;
    const now = Date.now();
    for (const link of [...this.links.values()]) {
      if (link.up && now - link.lastHeard > this.opts.deadMs) {
        link.up = false;
        this.countPeers();
        const n = link.unacked.reduce((sum, e) => sum + e.count - e.acked, 0);
        if (n > 0) {
          this.io.problem(
            new StreamError('EPEERLOST', `peer ${describeKey(link.id)} silent for ${now - link.lastHeard} ms with ${n} messages unacknowledged; they go to another instance when there is one`),
          );
        }
        this.failOver(link);
      } else if (!link.up && link.unacked.length > 0) {
        this.failOver(link);
      }
      if (!link.up && !link.fixed && link.unacked.length === 0) {
        this.links.delete(link.key);
        if (this.byId.get(link.id.toString('latin1')) === link) this.byId.delete(link.id.toString('latin1'));
        continue;
      }
      if (link.up || link.fixed) this.beat(link);
    }
  }

  /** A link is down: what it holds goes to other live links, in order, with their sequence numbers. */
  private failOver(link: Link): void {
    if (link.unacked.length === 0) return;
    if (this.opts.addressed) {
      // A reply belongs to its requester; no other peer may have it.
      const n = link.unacked.reduce((s, e) => s + e.count, 0);
      this.release(link, link.unacked.length);
      this.io.problem(
        new StreamError('EHOSTUNREACH', `${n} message${n === 1 ? '' : 's'} to ${describeKey(link.id)} not acknowledged: the peer did not return within ${this.opts.deadMs} ms`),
      );
      return;
    }
    const moving = link.unacked;
    if (!this.pick()) return; // nowhere to go yet; the next tick tries again (pick() takes live links only, never this one)
    link.unacked = [];
    for (const e of moving) {
      const to = this.pick()!;
      const moved: Outgoing = { seq: to.next, count: e.count, acked: e.acked, bytes: e.bytes, frames: e.frames, origin: e.origin, originSeq: e.originSeq };
      to.next += e.count;
      to.unacked.push(moved);
      this.redelivered += e.count - e.acked;
      void this.sendData(to, moved);
    }
  }

  private release(link: Link, n: number): void {
    for (let i = 0; i < n; i++) this.bytesInFlight -= link.unacked[i].bytes;
    this.framesInFlight -= n;
    link.unacked = link.unacked.slice(n);
    this.wake();
  }

  private countPeers(): void {
    let n = 0;
    for (const l of this.links.values()) if (l.up) n++;
    if (n !== this.livePeers) {
      this.livePeers = n;
      this.io.peers(n);
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }

  /** Resolves true once everything sent was acknowledged, false after `ms`. */
  async settle(ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    while (this.framesInFlight > 0 && Date.now() < until) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(50, Math.max(1, until - Date.now())));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.framesInFlight === 0;
  }

  close(): number {
    const left = this.inFlight;
    this.closed = true;
    clearInterval(this.timer);
    this.wake();
    for (const r of this.receiveWaiters.splice(0)) r();
    return left;
  }
}

/** How many messages from `originSeq` (at most `count`) a session had completed. */
function finishedOf(st: SessionState | undefined, originSeq: number, count: number): number {
  return st ? Math.min(count, Math.max(0, st.done - originSeq)) : 0;
}
