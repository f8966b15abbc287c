import { readU64, writeU64 } from './u64';

/**
 * The delivery header of exactly-once mode: one small frame put before every frame set on a link,
 * and the control messages (acknowledgements, heartbeats) that travel back on the same link.
 *
 *   'S' 'D' version(1) kind(1) id(8) seq(u64 LE) base(u64 LE) count(u32 LE) skip(u32 LE) = 36 bytes
 *
 * DATA   id = the link's session (random per sender link), seq = first message's sequence number,
 *        base = oldest sequence number the sender still holds (everything below was acknowledged or
 *        given up), count = messages in the frame set that follows, skip = how many of them at its
 *        start were already acknowledged (by the instance that had them before a fail-over).
 * ACK    id = session, seq = next sequence number expected (cumulative: all below were delivered).
 * RESEND id = session, base = as an ACK's seq (done below it), seq = where to resend from (the
 *        receiver saw a gap there).
 * BEAT   id = the sending stream's epoch (random per process start: a new epoch means the peer
 *        restarted). When the beating side sends data on this link, a second 8-byte frame names
 *        that link's session, and seq/base are its next and base sequence numbers, so a receiver
 *        notices a lost tail even when no newer data follows it.
 *
 * Sequence numbers are JavaScript numbers (exact to 2^53), written as two u32 halves (./u64.ts).
 *
 * A DATA frame set moved to another link by a fail-over carries 16 bytes more (52 in all): the
 * session and sequence number it was first sent with, origin(8) originSeq(u64 LE). A receiver that
 * finished messages of that session (a restarted instance, from its watermark file) skips them.
 */

export const DELIVERY_MAGIC0 = 0x53; // 'S'
export const DELIVERY_MAGIC1 = 0x44; // 'D'
export const DELIVERY_VERSION = 1;
export const HEADER_BYTES = 36;
/** A DATA header with its origin (a frame set moved by a fail-over). */
export const MOVED_HEADER_BYTES = HEADER_BYTES + 16;

export enum Kind {
  Data = 1,
  Ack = 2,
  Resend = 3,
  Beat = 4,
}

export interface Header {
  kind: Kind;
  id: Buffer;
  seq: number;
  base: number;
  count: number;
  skip: number;
  /** A moved frame set: the session and sequence number it was first sent with. */
  origin?: Buffer;
  originSeq?: number;
}

export class DeliveryError extends Error {
  readonly code = 'EBADFRAME';
}

export function encodeHeader(kind: Kind, id: Buffer, seq: number, base: number, count: number, skip = 0, origin?: Buffer, originSeq = 0): Buffer {
  const b = Buffer.allocUnsafe(origin ? MOVED_HEADER_BYTES : HEADER_BYTES);
  b[0] = DELIVERY_MAGIC0;
  b[1] = DELIVERY_MAGIC1;
  b[2] = DELIVERY_VERSION;
  b[3] = kind;
  id.copy(b, 4, 0, 8);
  writeU64(b, 12, seq);
  writeU64(b, 20, base);
  b.writeUInt32LE(count, 28);
  b.writeUInt32LE(skip, 32);
  if (origin) {
    origin.copy(b, 36, 0, 8);
    writeU64(b, 44, originSeq);
  }
  return b;
}

/** Reads a delivery header; throws DeliveryError (never anything else) for anything malformed. */
export function decodeHeader(frame: Buffer | undefined): Header {
  const moved = frame?.length === MOVED_HEADER_BYTES && frame[3] === Kind.Data;
  if (!frame || (frame.length !== HEADER_BYTES && !moved)) {
    throw new DeliveryError(`delivery header of ${frame?.length ?? 0} bytes (expected ${HEADER_BYTES}; is the peer in exactly-once mode?)`);
  }
  if (frame[0] !== DELIVERY_MAGIC0 || frame[1] !== DELIVERY_MAGIC1) {
    throw new DeliveryError(`bad delivery magic 0x${frame.subarray(0, 2).toString('hex')} (expected 0x5344 "SD")`);
  }
  if (frame[2] !== DELIVERY_VERSION) throw new DeliveryError(`unsupported delivery version ${frame[2]} (this node speaks ${DELIVERY_VERSION})`);
  const kind = frame[3];
  if (kind < Kind.Data || kind > Kind.Beat) throw new DeliveryError(`unknown delivery message kind ${kind}`);
  const seq = readU64(frame, 12);
  const base = readU64(frame, 20);
  const count = frame.readUInt32LE(28);
  const skip = frame.readUInt32LE(32);
  if (kind === Kind.Data && (count === 0 || skip >= count)) throw new DeliveryError(`data header with ${count} messages, ${skip} of them to skip`);
  const h: Header = { kind, id: frame.subarray(4, 12), seq, base, count, skip };
  if (moved) {
    h.origin = frame.subarray(36, 44);
    h.originSeq = readU64(frame, 44);
  }
  return h;
}

/** A random 8-byte id: a stream's epoch or a link's session. */
export function randomId(): Buffer {
  return require('crypto').randomBytes(8) as Buffer;
}
