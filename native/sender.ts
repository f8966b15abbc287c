import {
  BatchWriter,
  encodeMeta,
  encodePayload,
  encodeDetached,
  encodeSingle,
  EncodedPayload,
  FRAME_HEADER,
  PayloadType,
  recordSize,
} from './codec';
import { errorText, StreamError } from './errors';

/**
 * The sending half of every transport: an ordered queue of messages, encoded when they arrive,
 * handed to the transport one frame set at a time. Independent of ZeroMQ so that the QUIC and
 * RDMA transports reuse the same batching, limits and backpressure.
 *
 * Batching is adaptive, not timed: messages that arrive within one turn of the event loop (Node-RED
 * delivers each message in its own setImmediate) go out together, and while the transport is busy
 * the next batch keeps filling. An idle sender therefore adds at most one loop turn of latency.
 */

export type Format = 'spawn' | 'raw';

export interface SenderOptions {
  format: Format;
  /** Batch small messages into one frame (spawn format only). */
  batch: boolean;
  /** Seal a batch once it reaches this many bytes. */
  batchBytes: number;
  /** Payloads at least this large travel uncopied in a frame of their own. */
  detachBytes: number;
  /** Largest accepted payload in bytes; 0 for no limit. */
  maxMessageSize: number;
  /** Queued messages above which backpressure is reported. */
  highWater: number;
  /** Queued messages at which new messages are refused (with an error, so nothing is silently lost). */
  queueLimit: number;
  /** Frames put before each message: a pub/sub topic or a router identity. */
  envelope: boolean;
}

/** Called once per message: without an error when the transport took it, with one when it did not. */
export type SendCallback = (err?: StreamError) => void;

/** Hands one message's frames to the wire; resolves when the transport has accepted them. */
export type Transmit = (frames: Buffer[]) => Promise<void>;

export interface SenderEvents {
  /** Queue crossed the high-water mark (on) or drained below half of it (off). */
  backpressure(on: boolean, queued: number): void;
}

/**
 * A queued message. In the spawn format the entry is its own EncodedPayload (type and bytes), so a
 * message costs one small object here, not two: at 100 B the producer's allocations set its pace.
 */
interface Entry extends EncodedPayload {
  /** Topic (pub) or identity (router); batched messages share one. */
  key: Buffer | undefined;
  meta: Buffer;
  raw: Buffer[] | null; // raw format (type and bytes unused)
  size: number;
  cb: SendCallback;
}

const EMPTY_KEY = Buffer.alloc(0);

/** Seal a batch at this size unless a stream says otherwise. */
export const DEFAULT_BATCH_BYTES = 64 * 1024;
/** Payloads from this size travel uncopied in frames of their own (RDMA picks its own, per chunk). */
export const DETACH_BYTES = 16 * 1024;

/** The settings of a pattern node's stream that its sender is built from. */
export interface SenderSettings {
  format: Format;
  batch: boolean;
  batchBytes?: number;
  maxMessageSize: number;
  highWater: number;
  queueLimit: number;
}

/** The sender of a stream over ZeroMQ or QUIC: batching only in the spawn format, the usual sizes. */
export function streamSender(cfg: SenderSettings, envelope: boolean, transmit: Transmit, backpressure?: SenderEvents['backpressure']): Sender {
  return new Sender(
    {
      format: cfg.format,
      batch: cfg.batch && cfg.format === 'spawn',
      batchBytes: cfg.batchBytes ?? DEFAULT_BATCH_BYTES,
      detachBytes: DETACH_BYTES,
      maxMessageSize: cfg.maxMessageSize,
      highWater: cfg.highWater,
      queueLimit: cfg.queueLimit,
      envelope,
    },
    transmit,
    { backpressure: (on, queued) => backpressure?.(on, queued) },
  );
}
/** Consecutive large (detached) messages already queued go out as one frame set up to this many payload bytes: one send instead of one per message. */
const DETACHED_BATCH_BYTES = 1 << 20;
/** Frames in one detached frame set, whatever their size: libzmq queues whole messages. */
const MAX_DETACHED_RECORDS = 64;

export function rawFrames(payload: unknown): Buffer[] {
  if (Array.isArray(payload) && payload.length > 0 && payload.every((p) => Buffer.isBuffer(p))) return payload;
  if (Buffer.isBuffer(payload)) return [payload];
  if (typeof payload === 'string') return [Buffer.from(payload, 'utf8')];
  if (payload === undefined || payload === null) return [Buffer.alloc(0)];
  if (typeof payload === 'object') return [Buffer.from(JSON.stringify(payload), 'utf8')];
  return [Buffer.from(String(payload), 'utf8')];
}

export class Sender {
  /**
   * Entries before `head` are taken: their slots are cleared at once, since each holds a payload
   * (1 MiB ones made a producer keep the 4,096 taken before a compaction alive: 4 GB).
   */
  private queue: Array<Entry | undefined> = [];
  private head = 0;
  private scheduled = false;
  private pumping = false;
  private inBackpressure = false;
  private closed = false;
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];
  sentMessages = 0;
  sentBytes = 0;

  constructor(
    private readonly opts: SenderOptions,
    private readonly transmit: Transmit,
    private readonly events: SenderEvents,
  ) {}

  /** Messages not yet taken off the queue. */
  get queued(): number {
    return this.queue.length - this.head;
  }

  /** Messages not yet accepted by the transport: queued, plus the frame set being sent. */
  get pending(): number {
    return this.queued + this.inFlight;
  }

  /**
   * Queue a message: its payload, envelope key (topic or identity) and the other properties that
   * travel (whole-msg mode). Problems known up front (size, encoding, full queue) are reported at
   * once. Plain arguments rather than an object: this runs for every message.
   */
  send(payload: unknown, key: Buffer | undefined, meta: Record<string, unknown> | undefined, cb: SendCallback): void {
    if (this.closed) return cb(new StreamError('ECLOSED', 'the node is closing; message not sent'));
    if (this.queued >= this.opts.queueLimit) {
      return cb(
        new StreamError(
          'EQUEUEFULL',
          `queue full: ${this.queued} messages wait for the peers (queue limit ${this.opts.queueLimit}); message refused`,
        ),
      );
    }
    let entry: Entry;
    try {
      entry = this.encode(payload, key, meta, cb);
    } catch (e) {
      return cb(e instanceof StreamError ? e : new StreamError('EENCODE', `payload cannot be encoded: ${errorText(e)}`));
    }
    const max = this.opts.maxMessageSize;
    if (max > 0 && entry.size > max) {
      return cb(new StreamError('EMSGSIZE', `message of ${entry.size} bytes is over the maximum message size of ${max} bytes`));
    }
    this.queue.push(entry);
    if (!this.inBackpressure && this.queued > this.opts.highWater) {
      this.inBackpressure = true;
      this.events.backpressure(true, this.queued);
    }
    this.schedule();
  }

  private encode(payload: unknown, key: Buffer | undefined, meta: Record<string, unknown> | undefined, cb: SendCallback): Entry {
    const metaBytes = encodeMeta(meta);
    if (this.opts.format === 'raw') {
      const raw = rawFrames(payload);
      let size = 0;
      for (const f of raw) size += f.length;
      return { key, meta: metaBytes, type: PayloadType.Buffer, bytes: EMPTY_KEY, raw, size, cb };
    }
    // Buffers, the common case, without the intermediate object encodePayload returns.
    if (Buffer.isBuffer(payload)) return { key, meta: metaBytes, type: PayloadType.Buffer, bytes: payload, raw: null, size: payload.length, cb };
    const { type, bytes } = encodePayload(payload);
    return { key, meta: metaBytes, type, bytes, raw: null, size: bytes.length, cb };
  }

  private schedule(): void {
    if (this.scheduled || this.pumping) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.pump();
    });
  }

  /** Takes the next frame set off the queue: one message, or a batch of consecutive small ones. */
  private take(): { frames: Buffer[]; entries: Entry[] } {
    const first = this.next();
    const envelope = this.opts.envelope ? [first.key ?? EMPTY_KEY] : [];
    if (first.raw) {
      // Raw pub with no topic sends the bare payload, as a plain ZeroMQ publisher would.
      const env = first.key && first.key.length > 0 ? envelope : [];
      return { frames: [...env, ...first.raw], entries: [first] };
    }
    if (first.bytes.length >= this.opts.detachBytes) return this.takeDetached(first, envelope);
    const single = recordSize(first.meta, first);
    if (!this.opts.batch || single >= this.opts.batchBytes) {
      return { frames: [...envelope, ...encodeSingle(first.meta, first, this.opts.detachBytes)], entries: [first] };
    }
    // Choose the batch first, then write it into one buffer of exactly its size: an allocation
    // per frame (large ones live outside V8's heap and make garbage collections come sooner).
    const entries = [first];
    let size = FRAME_HEADER + single;
    while (this.head < this.queue.length) {
      const next = this.queue[this.head]!;
      if (!sameKey(first.key, next.key) || next.raw) break;
      const s = recordSize(next.meta, next);
      if (next.bytes.length >= this.opts.detachBytes || size + s > this.opts.batchBytes) break;
      entries.push(this.next());
      size += s;
    }
    const writer = new BatchWriter(size);
    for (const e of entries) writer.add(e.meta, e);
    return { frames: [...envelope, writer.seal()], entries };
  }

  /** Takes the entry at the head, clearing its slot. */
  private next(): Entry {
    const entry = this.queue[this.head]!;
    this.queue[this.head++] = undefined;
    return entry;
  }

  /** A large message, with the large ones queued right behind it when batching is on. */
  private takeDetached(first: Entry, envelope: Buffer[]): { frames: Buffer[]; entries: Entry[] } {
    const entries = [first];
    if (this.opts.batch) {
      const limit = DETACHED_BATCH_BYTES;
      let bytes = first.bytes.length;
      while (this.head < this.queue.length && entries.length < MAX_DETACHED_RECORDS) {
        const next = this.queue[this.head]!;
        if (next.raw || !sameKey(first.key, next.key)) break;
        const n = next.bytes.length;
        if (n < this.opts.detachBytes || bytes + n > limit) break;
        entries.push(this.next());
        bytes += n;
      }
    }
    const frames = encodeDetached(
      entries.map((e) => e.meta),
      entries,
    );
    return { frames: [...envelope, ...frames], entries };
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.head < this.queue.length) {
        const { frames, entries } = this.take();
        this.compact();
        let failure: StreamError | undefined;
        this.inFlight = entries.length;
        try {
          await this.transmit(frames);
        } catch (e) {
          failure = e instanceof StreamError ? e : new StreamError('ESEND', `send failed: ${errorText(e)}`);
        }
        this.inFlight = 0;
        if (!failure) {
          this.sentMessages += entries.length;
          for (const f of frames) this.sentBytes += f.length;
        }
        for (const entry of entries) entry.cb(failure);
        if (this.inBackpressure && this.queued <= this.opts.highWater / 2) {
          this.inBackpressure = false;
          this.events.backpressure(false, this.queued);
        }
      }
    } finally {
      this.pumping = false;
    }
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Drop consumed entries from the front now and then, so the queue array does not grow forever. */
  private compact(): void {
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  /** Resolves when everything queued so far has been handed to the transport, or after `ms`. */
  drain(ms: number): Promise<boolean> {
    if (this.queued === 0 && !this.pumping) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.queued === 0 && !this.pumping), ms);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Refuse further messages and fail the ones still queued; returns how many were failed. */
  close(reason: string): number {
    this.closed = true;
    const left = this.queue.slice(this.head);
    this.queue = [];
    this.head = 0;
    const err = new StreamError('ECLOSED', reason);
    for (const entry of left) entry!.cb(err);
    return left.length;
  }
}

function sameKey(a: Buffer | undefined, b: Buffer | undefined): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  return a.equals(b);
}
