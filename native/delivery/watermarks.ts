import * as fs from 'fs';
import * as path from 'path';

/**
 * The completed watermarks of an exactly-once receiver, kept in a small file so that a receiver
 * killed mid-stream (SIGKILL, OOM) and restarted knows which messages it had already finished:
 * those whose acknowledgement had not left the process yet are resent by the sender, and the
 * restarted receiver drops (and acknowledges) them instead of delivering them again.
 *
 * Per sender session one fixed-size record, rewritten in place with one pwrite(2) each time the
 * session's watermark ("everything below N is done") advances, synchronously, before the
 * acknowledgement is queued. A write(2) reaches the page cache, which outlives the process, so a
 * process crash loses no record and no fsync is needed. A machine crash (power loss) may lose the
 * records of the last seconds (the kernel's writeback delay): those messages come again, never
 * fewer; `sync` (O_DSYNC, every record written through to the disk) closes that at a disk write per
 * completion.
 *
 *   header (32 bytes): "SDWM" version(1) 0(3) recordBytes(u32) pid(u32) pidStart(u64) 0(8)
 *   record (32 bytes): session(8) done(u64) stamp(u64 ms) check(u32, FNV-1a of the first 24) 0(4)
 *
 * Records are 32-byte aligned after a 32-byte header, so no record ever spans two pages and a
 * single write replaces it whole. The file holds at most `maxSessions` records: a new session past
 * that takes the slot written longest ago (an ended session stops writing), so the file never
 * grows beyond 32 KiB + 32 bytes with the default 1024.
 *
 * The header names the process that has the file open; a second live process opening the same
 * file (two instances given one state directory) is refused, since their watermarks would mix.
 */

const MAGIC = Buffer.from('SDWM', 'latin1');
const VERSION = 1;
const HEADER = 32;
const RECORD = 32;
export const DEFAULT_MAX_SESSIONS = 1024;

export class WatermarkFileError extends Error {
  readonly code = 'ESTATEFILE';
}

export interface WatermarkFileOptions {
  /** Records at most (sessions remembered); the least recently written slot is reused past it. */
  maxSessions?: number;
  /** O_DSYNC: every record on the disk before the write returns (survives power loss, costs a disk write per completion). */
  sync?: boolean;
  /** Told once per problem found in the file (corrupt records, truncation); the file is still used. */
  warn?: (text: string) => void;
}

export interface Restored {
  session: Buffer;
  done: number;
}

function fnv1a(b: Buffer, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) {
    h ^= b[i];
    h = Math.imul(h, 0x01000193);
  }
  // Never 0: an all-zero record is an empty slot, not a valid one.
  return (h >>> 0) || 1;
}

function writeU64(b: Buffer, at: number, n: number): void {
  b.writeUInt32LE(n % 0x1_0000_0000, at);
  b.writeUInt32LE(Math.floor(n / 0x1_0000_0000), at + 4);
}

function readU64(b: Buffer, at: number): number {
  return b.readUInt32LE(at) + b.readUInt32LE(at + 4) * 0x1_0000_0000;
}

/** The start time of a process (/proc/<pid>/stat field 22), so a recycled pid is not taken for the owner; 0 where unknown. */
function processStart(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]) || 0;
  } catch {
    return 0;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class WatermarkFile {
  private fd: number;
  private readonly record = Buffer.alloc(RECORD);
  /** Session (latin1 key) → slot. */
  private readonly slots = new Map<string, number>();
  /** Per slot, when it was last written (ms), for reuse past maxSessions. */
  private readonly writtenAt: number[] = [];
  private max: number;
  /** Slots of the file that hold no valid record (empty or corrupt): taken before the file grows. */
  private readonly free: number[] = [];
  private readonly restoredList: Restored[] = [];

  private constructor(
    readonly file: string,
    fd: number,
    max: number,
  ) {
    this.fd = fd;
    this.max = max;
  }

  /**
   * Opens (creating it and its folder) the file and reads back what a previous run left. Throws
   * WatermarkFileError, naming the path, when the file cannot be created or written, or another
   * live process has it; a corrupt or truncated file is reported through `warn` and what is valid
   * in it is used (a lost record only means those messages come again).
   */
  static open(file: string, opts: WatermarkFileOptions = {}): WatermarkFile {
    const max = Math.max(1, opts.maxSessions ?? DEFAULT_MAX_SESSIONS);
    const warn = opts.warn ?? (() => undefined);
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true });
    } catch (e) {
      throw new WatermarkFileError(`cannot create the folder of the delivery state file ${file}: ${(e as Error).message}`);
    }
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | (opts.sync ? fs.constants.O_DSYNC : 0), 0o600);
    } catch (e) {
      throw new WatermarkFileError(`cannot open the delivery state file ${file} for writing: ${(e as Error).message}`);
    }
    const w = new WatermarkFile(file, fd, max);
    try {
      w.load(warn);
    } catch (e) {
      fs.closeSync(fd);
      throw e instanceof WatermarkFileError ? e : new WatermarkFileError(`delivery state file ${file}: ${(e as Error).message}`);
    }
    return w;
  }

  private load(warn: (text: string) => void): void {
    let data: Buffer;
    try {
      data = fs.readFileSync(this.file);
    } catch (e) {
      throw new WatermarkFileError(`cannot read the delivery state file ${this.file}: ${(e as Error).message}`);
    }
    let fresh = data.length === 0;
    if (!fresh && (data.length < HEADER || !data.subarray(0, 4).equals(MAGIC) || data[4] !== VERSION || data.readUInt32LE(8) !== RECORD)) {
      // Not ours, or from an incompatible version: nothing in it can be trusted. Kept aside for a look, then started afresh.
      const aside = `${this.file}.corrupt`;
      warn(`delivery state file ${this.file} is not a spawn-red watermark file (${data.length < HEADER ? `only ${data.length} bytes` : 'bad header'}); moved to ${aside} and started afresh: messages finished before a crash may come again once`);
      try {
        fs.copyFileSync(this.file, aside);
      } catch {
        // keeping a copy is a courtesy
      }
      fresh = true;
      data = Buffer.alloc(0);
    }
    if (!fresh) {
      const pid = data.readUInt32LE(12);
      const start = readU64(data, 16);
      if (pid !== process.pid && pid !== 0 && alive(pid) && (start === 0 || processStart(pid) === start)) {
        throw new WatermarkFileError(
          `delivery state file ${this.file} is in use by process ${pid}: two instances are given the same state file; give each its own Node-RED user directory or SPAWN_DELIVERY_DIR`,
        );
      }
    }
    const header = Buffer.alloc(HEADER);
    MAGIC.copy(header, 0);
    header[4] = VERSION;
    header.writeUInt32LE(RECORD, 8);
    header.writeUInt32LE(process.pid, 12);
    writeU64(header, 16, processStart(process.pid));
    try {
      if (fresh) fs.ftruncateSync(this.fd, 0);
      fs.writeSync(this.fd, header, 0, HEADER, 0);
    } catch (e) {
      throw new WatermarkFileError(`cannot write the delivery state file ${this.file}: ${(e as Error).message}`);
    }
    if (fresh) return;

    const whole = Math.floor((data.length - HEADER) / RECORD);
    if ((data.length - HEADER) % RECORD !== 0) {
      warn(`delivery state file ${this.file} is truncated (${data.length} bytes, a partial record at its end ignored)`);
    }
    let corrupt = 0;
    const best = new Map<string, { slot: number; done: number; stamp: number }>();
    for (let slot = 0; slot < whole; slot++) {
      const at = HEADER + slot * RECORD;
      const r = data.subarray(at, at + RECORD);
      this.writtenAt.push(0);
      if (r.every((x) => x === 0)) {
        this.free.push(slot);
        continue;
      }
      if (r.readUInt32LE(24) !== fnv1a(r, 0, 24)) {
        corrupt++;
        this.free.push(slot);
        continue;
      }
      const key = r.subarray(0, 8).toString('latin1');
      const done = readU64(r, 8);
      const stamp = readU64(r, 16);
      this.writtenAt[slot] = stamp;
      const had = best.get(key);
      if (!had || done > had.done) {
        if (had) this.free.push(had.slot);
        best.set(key, { slot, done, stamp });
      } else this.free.push(slot);
    }
    if (corrupt > 0) {
      warn(`delivery state file ${this.file}: ${corrupt} corrupt record${corrupt === 1 ? '' : 's'} ignored (their senders' messages finished before a crash may come again once)`);
    }
    for (const [key, { slot, done }] of best) {
      this.slots.set(key, slot);
      this.restoredList.push({ session: Buffer.from(key, 'latin1'), done });
    }
    // A file written with a larger bound keeps its size.
    this.max = Math.max(this.max, whole);
    // Free slots are taken lowest first.
    this.free.sort((x, y) => y - x);
  }

  /** What a previous run of this receiver had completed, per sender session. */
  restored(): Restored[] {
    return this.restoredList;
  }

  /**
   * Everything of `session` below `done` is complete. One pwrite(2) of 32 bytes; throws only when
   * the write fails (disk full, file system gone), with the path in the message.
   */
  write(session: Buffer, done: number): void {
    if (this.fd < 0) return;
    const key = session.toString('latin1');
    let slot = this.slots.get(key);
    const now = Date.now();
    if (slot === undefined) {
      slot = this.freeSlot();
      this.slots.set(key, slot);
    }
    this.writtenAt[slot] = now;
    const r = this.record;
    session.copy(r, 0, 0, 8);
    writeU64(r, 8, done);
    writeU64(r, 16, now);
    r.writeUInt32LE(fnv1a(r, 0, 24), 24);
    try {
      fs.writeSync(this.fd, r, 0, RECORD, HEADER + slot * RECORD);
    } catch (e) {
      throw new WatermarkFileError(`cannot write the delivery state file ${this.file}: ${(e as Error).message}`);
    }
  }

  private freeSlot(): number {
    const reuse = this.free.pop();
    if (reuse !== undefined) return reuse;
    if (this.writtenAt.length < this.max) {
      this.writtenAt.push(0);
      return this.writtenAt.length - 1;
    }
    let oldest = 0;
    for (let i = 1; i < this.writtenAt.length; i++) if (this.writtenAt[i] < this.writtenAt[oldest]) oldest = i;
    for (const [k, s] of this.slots) {
      if (s === oldest) {
        this.slots.delete(k);
        break;
      }
    }
    return oldest;
  }

  /** Sessions with a slot. */
  get sessions(): number {
    return this.slots.size;
  }

  close(): void {
    if (this.fd < 0) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      // already gone
    }
    this.fd = -1;
  }
}
