/**
 * Records on a QUIC stream. A stream is a byte pipe, so each unit the pattern layer exchanges is a
 * record: u32 length (of what follows), u8 kind, body. A DATA body is the ZeroMQ-style frame set
 * the Sender made (envelope, then the spawn-encoded batch or message), each frame as u32 length
 * and bytes: the same encoding and batching as over ZeroMQ, only framed for a stream.
 */

export const enum Kind {
  /** A frame set: (u32 length, bytes) per frame. */
  Data = 0,
  /** JSON {pattern, identity}: who is on the other end; sent first by both sides. */
  Hello = 1,
  /** A subscription prefix (sub → pub). */
  Subscribe = 2,
  /** Everything before this was read; the reader closes the connection (clean close). */
  Bye = 3,
}

/** Frames smaller than this are copied into the record header buffer rather than written apart. */
const COPY_BELOW = 16 * 1024;

/** Encode a record as a list of buffers to write in order (large frames are not copied). */
export function encodeData(frames: Buffer[]): Buffer[] {
  let body = 0;
  for (const f of frames) body += 4 + f.length;
  const out: Buffer[] = [];
  let small = 5;
  for (const f of frames) small += 4 + (f.length < COPY_BELOW ? f.length : 0);
  let head = Buffer.allocUnsafe(small);
  head.writeUInt32LE(body + 1, 0);
  head[4] = Kind.Data;
  let off = 5;
  for (const f of frames) {
    head.writeUInt32LE(f.length, off);
    off += 4;
    if (f.length < COPY_BELOW) {
      f.copy(head, off);
      off += f.length;
    } else {
      out.push(head.subarray(0, off));
      out.push(f);
      head = head.subarray(off);
      off = 0;
    }
  }
  if (off > 0) out.push(head.subarray(0, off));
  return out;
}

export function encodeRecord(kind: Kind, body: Buffer): Buffer {
  const b = Buffer.allocUnsafe(5 + body.length);
  b.writeUInt32LE(body.length + 1, 0);
  b[4] = kind;
  body.copy(b, 5);
  return b;
}

export class RecordError extends Error {}

/** Split a DATA body back into frames (views into the body, no copies). */
export function decodeData(body: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  let off = 0;
  while (off < body.length) {
    if (off + 4 > body.length) throw new RecordError('truncated frame length in a data record');
    const n = body.readUInt32LE(off);
    off += 4;
    if (off + n > body.length) throw new RecordError(`frame of ${n} bytes runs past the end of its record`);
    frames.push(body.subarray(off, off + n));
    off += n;
  }
  return frames;
}

/** Reassembles records from stream chunks of any size. */
export class RecordReader {
  private chunks: Buffer[] = [];
  private have = 0;

  constructor(
    /** Largest record accepted; a bigger length means garbage or a hostile peer. */
    private readonly maxRecord: number,
    private readonly onRecord: (kind: Kind, body: Buffer) => void,
  ) {}

  /** Throws RecordError for a malformed stream (the connection should then be closed). */
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.have += chunk.length;
    for (;;) {
      if (this.have < 5) return;
      const len = this.peekLength();
      if (len < 1 || len > this.maxRecord) throw new RecordError(`record of ${len} bytes is over the limit of ${this.maxRecord} bytes, or empty`);
      if (this.have < 4 + len) return;
      const rec = this.take(4 + len);
      this.onRecord(rec[4] as Kind, rec.subarray(5));
    }
  }

  private peekLength(): number {
    const first = this.chunks[0];
    if (first.length >= 4) return first.readUInt32LE(0);
    const b = Buffer.allocUnsafe(4);
    let off = 0;
    for (const c of this.chunks) {
      const n = Math.min(4 - off, c.length);
      c.copy(b, off, 0, n);
      off += n;
      if (off === 4) break;
    }
    return b.readUInt32LE(0);
  }

  /** Take n bytes off the front: a view when they sit in one chunk, else one copy. */
  private take(n: number): Buffer {
    this.have -= n;
    const first = this.chunks[0];
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0];
      const k = Math.min(n - off, c.length);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}
