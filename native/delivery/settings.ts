/**
 * Delivery-engine settings shared by every transport's link layer (zmq-links.ts, quic-links.ts,
 * fabric-links.ts), so the window and heartbeat are the same whatever carries the stream.
 */

/**
 * Bytes in flight per stream: 256 messages of 64 KiB (16 chunks of 1 MiB over RDMA), ample for a
 * LAN; also what a stage holds for a dead peer.
 */
export const WINDOW_BYTES = 16 * 1024 * 1024;

/** Heartbeat period of every link: a live peer is heard from at least this often. */
export const BEAT_MS = 200;

/**
 * Messages in a frame set as the Sender (native/sender.ts) made it: a raw message is one; a spawn
 * frame set says its count in its first frame's header (native/codec.ts, u32 LE at offset 4).
 */
export function messageCount(format: string): (frames: Buffer[]) => number {
  return (frames) => (format === 'raw' ? 1 : frames[0].readUInt32LE(4));
}
