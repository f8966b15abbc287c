/**
 * How a transport message (the frames native/sender.ts hands over: one spawn frame, or a header
 * and a detached payload) travels as fabric messages ("chunks") no larger than the receiver's
 * posted buffers.
 *
 *   chunk    = senderId(u32 LE) seq(u32 LE) data
 *   message  = frameCount(u32 LE) frameLength(u32 LE) * frameCount, then the frames' bytes
 *
 * A message's bytes are cut into consecutive chunks; a chunk never holds parts of two messages,
 * so the first chunk of a message starts with its preamble. `senderId` is the number the
 * receiver gave this sender when it connected (chunks from several senders share the
 * receiver's buffers); `seq` counts the sender's chunks to that receiver, so a lost or
 * reordered chunk is detected instead of silently corrupting a message.
 */

export const CHUNK_HEADER = 8;
/** More frames than any sender makes (spawn uses 1 or 2): a preamble claiming more is garbage. */
export const MAX_FRAMES = 16;

export function writeChunkHeader(target: Buffer, senderId: number, seq: number): void {
  target.writeUInt32LE(senderId >>> 0, 0);
  target.writeUInt32LE(seq >>> 0, 4);
}

/** Reads a message's frames out into chunk-sized pieces, in order; copies, never allocates. */
export class MessageCursor {
  readonly total: number;
  private readonly parts: Buffer[];
  private part = 0;
  private offset = 0;

  constructor(frames: Buffer[]) {
    const preamble = Buffer.allocUnsafe(4 + 4 * frames.length);
    preamble.writeUInt32LE(frames.length, 0);
    let total = preamble.length;
    frames.forEach((f, i) => {
      preamble.writeUInt32LE(f.length, 4 + 4 * i);
      total += f.length;
    });
    this.parts = [preamble, ...frames];
    this.total = total;
  }

  get done(): boolean {
    return this.part >= this.parts.length;
  }

  /** Whether nothing has been taken yet (the message can still go to another peer). */
  get untouched(): boolean {
    return this.part === 0 && this.offset === 0;
  }

  /** Views of the next bytes, up to `room` of them, without taking them (skip() does). */
  slices(room: number): Buffer[] {
    const out: Buffer[] = [];
    let part = this.part;
    let offset = this.offset;
    while (room > 0 && part < this.parts.length) {
      const p = this.parts[part];
      const n = Math.min(room, p.length - offset);
      if (n > 0) out.push(offset === 0 && n === p.length ? p : p.subarray(offset, offset + n));
      room -= n;
      offset += n;
      if (offset >= p.length) {
        part++;
        offset = 0;
      }
    }
    return out;
  }

  /** Takes `n` bytes (after slices() handed them out). */
  skip(n: number): void {
    while (n > 0 && this.part < this.parts.length) {
      const take = Math.min(n, this.parts[this.part].length - this.offset);
      n -= take;
      this.offset += take;
      if (this.offset >= this.parts[this.part].length) {
        this.part++;
        this.offset = 0;
      }
    }
    // Empty frames carry nothing: taking them too lets `done` hold once every byte went.
    while (this.part < this.parts.length && this.parts[this.part].length === this.offset) {
      this.part++;
      this.offset = 0;
    }
  }

  /** Copies up to `room` bytes into `target` at `at`; returns how many. */
  fill(target: Buffer, at: number, room: number): number {
    let written = 0;
    while (written < room && this.part < this.parts.length) {
      const p = this.parts[this.part];
      const n = Math.min(room - written, p.length - this.offset);
      p.copy(target, at + written, this.offset, this.offset + n);
      written += n;
      this.offset += n;
      if (this.offset >= p.length) {
        this.part++;
        this.offset = 0;
      }
    }
    return written;
  }
}

export type Reassembled = { frames: Buffer[] } | { refused: number } | { bad: string } | null;

/**
 * Rebuilds one sender's messages from its chunks (given in order). Each frame is allocated
 * once at its exact size when the preamble arrives and filled as chunks come, so a message of
 * many chunks costs one copy. A message whose size is over `maxBytes` is skipped, not buffered.
 */
export class Reassembler {
  private frames: Buffer[] | null = null;
  private frame = 0;
  private offset = 0;
  /** Bytes of the current message still to come (0: the next chunk starts a message). */
  private remaining = 0;
  private skipping = false;
  private total = 0;

  constructor(private readonly maxBytes: number) {}

  /** No message is half-built: the next chunk starts one. */
  get atStart(): boolean {
    return this.remaining === 0;
  }

  /** Takes the data of the next chunk (header removed); returns a message when one completes. */
  push(data: Buffer): Reassembled {
    let at = 0;
    if (this.remaining === 0) {
      if (data.length < 4) return { bad: `a chunk of ${data.length} bytes cannot start a message` };
      const count = data.readUInt32LE(0);
      if (count < 1 || count > MAX_FRAMES || data.length < 4 + 4 * count) return { bad: `a message preamble claims ${count} frames` };
      const lengths: number[] = [];
      let total = 0;
      for (let i = 0; i < count; i++) {
        const n = data.readUInt32LE(4 + 4 * i);
        lengths.push(n);
        total += n;
      }
      at = 4 + 4 * count;
      this.remaining = total;
      this.total = total;
      this.frame = 0;
      this.offset = 0;
      this.skipping = this.maxBytes > 0 && total > this.maxBytes;
      this.frames = this.skipping ? null : lengths.map((n) => Buffer.allocUnsafe(n));
      if (this.skipping) {
        this.remaining -= Math.min(this.remaining, data.length - at);
        if (this.remaining > 0) return null;
        this.skipping = false;
        return { refused: total };
      }
      if (total === 0) return this.finish();
    } else if (this.skipping) {
      this.remaining -= Math.min(this.remaining, data.length);
      if (this.remaining === 0) {
        this.skipping = false;
        return { refused: this.total };
      }
      return null;
    }
    const frames = this.frames!;
    while (at < data.length) {
      if (this.frame >= frames.length) return { bad: `${data.length - at} bytes beyond the end of a message` };
      const f = frames[this.frame];
      const n = Math.min(f.length - this.offset, data.length - at);
      data.copy(f, this.offset, at, at + n);
      at += n;
      this.offset += n;
      this.remaining -= n;
      while (this.frame < frames.length && this.offset >= frames[this.frame].length) {
        this.frame++;
        this.offset = 0;
      }
    }
    return this.remaining === 0 ? this.finish() : null;
  }

  private finish(): Reassembled {
    const frames = this.frames!;
    this.frames = null;
    this.remaining = 0;
    return { frames };
  }
}
