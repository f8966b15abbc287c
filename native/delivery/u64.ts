/**
 * Unsigned 64-bit little-endian fields holding JavaScript numbers (sequence numbers, timestamps):
 * exact to 2^53, written as two u32 halves so no BigInt is made per header on the hot path.
 */

export function writeU64(b: Buffer, at: number, n: number): void {
  b.writeUInt32LE(n % 0x1_0000_0000, at);
  b.writeUInt32LE(Math.floor(n / 0x1_0000_0000), at + 4);
}

export function readU64(b: Buffer, at: number): number {
  return b.readUInt32LE(at) + b.readUInt32LE(at + 4) * 0x1_0000_0000;
}
