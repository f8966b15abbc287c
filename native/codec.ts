/**
 * The `spawn` wire format: typed payloads, optional message metadata, many records per frame.
 *
 * A spawn message is one ZeroMQ frame (after any envelope frames such as a pub/sub topic or a
 * router identity), or, when large Buffers travel uncopied in frames of their own, a header frame
 * followed by one frame per record:
 *
 *   frame header (8 bytes)  'S' 'R' version(1) flags(1) recordCount(u32 LE)
 *   record * recordCount    type(u8) metaLength(u32 LE) payloadLength(u32 LE) meta payload
 *
 * flags bit 0 (DETACHED): the records' payloads are not in the header frame; record i's payload is
 * frame i+1. Several large messages queued together go as one ZeroMQ message this way, so the
 * per-send cost (a promise, a native call, a receive on the other side) is paid once for them.
 * `meta` is UTF-8 JSON of the msg properties that travel (whole-msg mode), or empty.
 *
 * Decoding is all-or-nothing per frame: a frame that fails any check yields a FrameError and no
 * records, so a bad peer can never inject half a batch.
 */

export const MAGIC0 = 0x53; // 'S'
export const MAGIC1 = 0x52; // 'R'
export const VERSION = 1;
export const FRAME_HEADER = 8;
export const RECORD_HEADER = 9;
const FLAG_DETACHED = 0x01;
const KNOWN_FLAGS = FLAG_DETACHED;

export enum PayloadType {
  Buffer = 0,
  String = 1,
  Number = 2,
  Boolean = 3,
  Json = 4,
  Null = 5,
  Undefined = 6,
}

/** What travels for one Node-RED message: the payload and, optionally, other properties. */
export interface WireMessage {
  payload: unknown;
  meta?: Record<string, unknown>;
  /** Set on a received message that was refused (e.g. over the size limit): why. */
  refused?: string;
}

export class FrameError extends Error {
  readonly code = 'EBADFRAME';
}

/** A payload turned into bytes: the type tag and either a Buffer or a string to write as UTF-8. */
export interface EncodedPayload {
  type: PayloadType;
  bytes: Buffer;
}

const EMPTY = Buffer.alloc(0);

export function encodePayload(payload: unknown): EncodedPayload {
  if (Buffer.isBuffer(payload)) return { type: PayloadType.Buffer, bytes: payload };
  switch (typeof payload) {
    case 'string':
      return { type: PayloadType.String, bytes: Buffer.from(payload, 'utf8') };
    case 'number': {
      const b = Buffer.allocUnsafe(8);
      b.writeDoubleLE(payload, 0);
      return { type: PayloadType.Number, bytes: b };
    }
    case 'boolean':
      return { type: PayloadType.Boolean, bytes: Buffer.from([payload ? 1 : 0]) };
    case 'undefined':
      return { type: PayloadType.Undefined, bytes: EMPTY };
    default:
      if (payload === null) return { type: PayloadType.Null, bytes: EMPTY };
      if (payload instanceof Uint8Array) {
        return { type: PayloadType.Buffer, bytes: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength) };
      }
      return { type: PayloadType.Json, bytes: Buffer.from(JSON.stringify(payload), 'utf8') };
  }
}

export function decodePayload(type: number, bytes: Buffer): unknown {
  switch (type) {
    case PayloadType.Buffer:
      return bytes;
    case PayloadType.String:
      return bytes.toString('utf8');
    case PayloadType.Number:
      if (bytes.length !== 8) throw new FrameError(`number payload of ${bytes.length} bytes (expected 8)`);
      return bytes.readDoubleLE(0);
    case PayloadType.Boolean:
      if (bytes.length !== 1) throw new FrameError(`boolean payload of ${bytes.length} bytes (expected 1)`);
      return bytes[0] !== 0;
    case PayloadType.Json:
      try {
        return JSON.parse(bytes.toString('utf8'));
      } catch (e) {
        throw new FrameError(`JSON payload does not parse: ${(e as Error).message}`);
      }
    case PayloadType.Null:
      return null;
    case PayloadType.Undefined:
      return undefined;
    default:
      throw new FrameError(`unknown payload type ${type}`);
  }
}

export function encodeMeta(meta: Record<string, unknown> | undefined): Buffer {
  return meta === undefined ? EMPTY : Buffer.from(JSON.stringify(meta), 'utf8');
}

/** Size a message takes inside a frame, header included. */
export function recordSize(metaBytes: Buffer, payload: EncodedPayload): number {
  return RECORD_HEADER + metaBytes.length + payload.bytes.length;
}

function writeFrameHeader(target: Buffer, flags: number, count: number): void {
  target[0] = MAGIC0;
  target[1] = MAGIC1;
  target[2] = VERSION;
  target[3] = flags;
  target.writeUInt32LE(count, 4);
}

function writeRecordHeader(target: Buffer, at: number, type: PayloadType, metaLength: number, payloadLength: number): number {
  // Byte by byte rather than writeUInt32LE, whose argument checks cost more than the write for
  // the hundreds of records of a batch of small messages.
  target[at] = type;
  target[at + 1] = metaLength;
  target[at + 2] = metaLength >>> 8;
  target[at + 3] = metaLength >>> 16;
  target[at + 4] = metaLength >>> 24;
  target[at + 5] = payloadLength;
  target[at + 6] = payloadLength >>> 8;
  target[at + 7] = payloadLength >>> 16;
  target[at + 8] = payloadLength >>> 24;
  return at + RECORD_HEADER;
}

/**
 * A frame being filled with records. Records are copied into one buffer so a sealed batch is a
 * single allocation handed to ZeroMQ; given the exact size up front, nothing is allocated twice.
 */
export class BatchWriter {
  private buf: Buffer;
  private used = FRAME_HEADER;
  count = 0;

  constructor(private readonly capacity: number) {
    this.buf = Buffer.allocUnsafe(capacity);
  }

  get size(): number {
    return this.used;
  }

  /** True when a record of `bytes` would still fit (a first record always fits: the batch grows). */
  fits(bytes: number): boolean {
    return this.count === 0 || this.used + bytes <= this.capacity;
  }

  add(meta: Buffer, payload: EncodedPayload): void {
    const need = this.used + RECORD_HEADER + meta.length + payload.bytes.length;
    if (need > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
      this.buf.copy(bigger, 0, 0, this.used);
      this.buf = bigger;
    }
    let at = writeRecordHeader(this.buf, this.used, payload.type, meta.length, payload.bytes.length);
    // TypedArray.set, not Buffer.copy: the same memmove without Buffer.copy's argument handling.
    if (meta.length > 0) {
      this.buf.set(meta, at);
      at += meta.length;
    }
    this.buf.set(payload.bytes, at);
    at += payload.bytes.length;
    this.used = at;
    this.count++;
  }

  /** The finished frame. A writer makes one frame: sized exactly, its buffer is the frame. */
  seal(): Buffer {
    writeFrameHeader(this.buf, 0, this.count);
    return this.used === this.buf.length ? this.buf : this.buf.subarray(0, this.used);
  }
}

/** One message as its own frame(s); a large payload is left in a frame of its own, uncopied. */
export function encodeSingle(meta: Buffer, payload: EncodedPayload, detachAbove: number): Buffer[] {
  if (payload.bytes.length >= detachAbove) return encodeDetached([meta], [payload]);
  const w = new BatchWriter(FRAME_HEADER + RECORD_HEADER + meta.length + payload.bytes.length);
  w.add(meta, payload);
  return [w.seal()];
}

/** Messages whose payloads travel uncopied, each in a frame of its own after one header frame. */
export function encodeDetached(metas: Buffer[], payloads: EncodedPayload[]): Buffer[] {
  let size = FRAME_HEADER;
  for (const m of metas) size += RECORD_HEADER + m.length;
  const head = Buffer.allocUnsafe(size);
  writeFrameHeader(head, FLAG_DETACHED, payloads.length);
  const frames: Buffer[] = [head];
  let at = FRAME_HEADER;
  for (let i = 0; i < payloads.length; i++) {
    at = writeRecordHeader(head, at, payloads[i].type, metas[i].length, payloads[i].bytes.length);
    at += metas[i].copy(head, at);
    frames.push(payloads[i].bytes);
  }
  return frames;
}

/**
 * Decode a spawn message from its frames (envelope frames already removed). Payloads over
 * `maxPayload` bytes (0: no limit) come back with `refused` set instead. Throws FrameError describing the first problem found.
 */
export function decodeFrames(frames: Buffer[], maxPayload = 0): WireMessage[] {
  if (frames.length === 0) throw new FrameError('empty message');
  const head = frames[0];
  if (head.length < FRAME_HEADER) throw new FrameError(`frame of ${head.length} bytes is shorter than the 8-byte header`);
  if (head[0] !== MAGIC0 || head[1] !== MAGIC1) {
    throw new FrameError(`bad magic 0x${head.subarray(0, 2).toString('hex')} (expected 0x5352 "SR"; is the sender using the raw format?)`);
  }
  if (head[2] !== VERSION) throw new FrameError(`unsupported version ${head[2]} (this node speaks version ${VERSION})`);
  const flags = head[3];
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new FrameError(`unknown flags 0x${flags.toString(16)}`);
  const count = head.readUInt32LE(4);
  const detached = (flags & FLAG_DETACHED) !== 0;
  if (count === 0) throw new FrameError('frame holds no records');
  const expectedFrames = detached ? count + 1 : 1;
  if (frames.length !== expectedFrames) {
    throw new FrameError(`${frames.length} frames where ${expectedFrames} expected (${count} record${count === 1 ? '' : 's'}${detached ? ', payloads in frames of their own' : ''})`);
  }
  // A record needs at least its header: reject impossible counts before allocating anything.
  if (count > (head.length - FRAME_HEADER) / RECORD_HEADER) {
    throw new FrameError(`frame claims ${count} records but has only ${head.length} bytes`);
  }
  const out: WireMessage[] = new Array(count);
  let at = FRAME_HEADER;
  for (let i = 0; i < count; i++) {
    if (at + RECORD_HEADER > head.length) throw new FrameError(`record ${i + 1} of ${count} is truncated`);
    const type = head[at];
    const metaLength = head.readUInt32LE(at + 1);
    const payloadLength = head.readUInt32LE(at + 5);
    at += RECORD_HEADER;
    const inlinePayload = detached ? 0 : payloadLength;
    if (at + metaLength + inlinePayload > head.length) {
      throw new FrameError(`record ${i + 1} of ${count} declares ${metaLength + payloadLength} bytes beyond the frame's end`);
    }
    let meta: Record<string, unknown> | undefined;
    if (metaLength > 0) {
      try {
        meta = JSON.parse(head.toString('utf8', at, at + metaLength));
      } catch (e) {
        throw new FrameError(`record ${i + 1} metadata does not parse: ${(e as Error).message}`);
      }
      if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) {
        throw new FrameError(`record ${i + 1} metadata is not an object`);
      }
      at += metaLength;
    }
    let bytes: Buffer;
    if (detached) {
      bytes = frames[i + 1];
      if (bytes.length !== payloadLength) {
        throw new FrameError(`detached payload ${i + 1} of ${bytes.length} bytes, header says ${payloadLength}`);
      }
    } else {
      bytes = head.subarray(at, at + payloadLength);
      at += payloadLength;
    }
    // An oversize message is refused on its own; the rest of its batch is still delivered.
    if (maxPayload > 0 && payloadLength > maxPayload) {
      out[i] = { payload: undefined, refused: `message of ${payloadLength} bytes is over the maximum message size of ${maxPayload} bytes` };
    } else {
      // No meta key at all when there is none: a receiver may adopt this object as its message.
      const m: WireMessage = { payload: decodePayload(type, bytes) };
      if (meta) m.meta = meta;
      out[i] = m;
    }
  }
  if (at !== head.length) throw new FrameError(`${head.length - at} trailing bytes after ${count} records`);
  return out;
}
