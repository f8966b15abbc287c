import * as fs from 'fs';
import * as path from 'path';
import { readU64, writeU64 } from './u64';

/**
 * The completed watermarks of an exactly-once receiver, kept in a small file so that a receiver
 * killed mid-stream (SIGKILL, OOM) and restarted knows which messages it had already finished:
 * those whose acknowledgement had not left the process yet are resent by the sender, and the
 * restarted receiver drops (and acknowledges) them instead of delivering them again.
 *
 * Per sender session one slot, rewritten in place each time the session's watermark ("everything
 * below N is done") advances, synchronously, before the acknowledgement is queued. The file is
 * mapped into memory (MAP_SHARED, through koffi): a record update is a few stores into the page
 * cache, no system call, and the page cache outlives the process, so a process crash loses no
 * record and no fsync is needed. Where mapping is not possible (no koffi, not Linux) each update
 * is one pwrite(2) of 32 bytes instead (~1 µs). A machine crash (power loss) may lose the records
 * of the last seconds (the kernel's writeback delay): those messages come again, never fewer;
 * `sync` (pwrite with O_DSYNC, every record on the disk before it returns) closes that at a disk
 * write per completion.
 *
 *   header (32 bytes): "SDWM" version(1) 0(3) recordBytes(u32) pid(u32) pidStart(u64) 0(8)
 *   slot (64 bytes): two copies of a record, written alternately
 *   record (32 bytes): session(8) done(u64) stamp(u64) check(u32, FNV-1a of the first 24) 0(4)
 *
 * The stamp counts updates over the file's life (a reopened file goes on from its highest): it
 * tells which copy is newer and which slot was written longest ago, without a clock read per update.
 *
 * Two copies, because stores into a mapping are not atomic: a process killed in the middle of
 * one leaves that copy torn (its checksum fails) and the other one intact, one update behind, the
 * update that was under way when it died (a done() call that had not returned: the message comes
 * again, as any the receiver had not finished). On reading, a slot's valid copy with the newer
 * stamp (then the higher watermark) wins.
 *
 * The file has room for `maxSessions` slots (1024 by default: 64 KiB), written in full when it is
 * created so that a store into the mapping never needs a block the disk has not got. A new session
 * past that takes the slot written longest ago (a session that ended stops writing).
 *
 * The header names the process that has the file open; a second live process opening the same
 * file (two instances given one state directory) is refused, since their watermarks would mix.
 */

const MAGIC = Buffer.from('SDWM', 'latin1');
const VERSION = 1;
const HEADER = 32;
const RECORD = 32;
const SLOT = 2 * RECORD;
export const DEFAULT_MAX_SESSIONS = 1024;

export class WatermarkFileError extends Error {
  readonly code = 'ESTATEFILE';
}

export interface WatermarkFileOptions {
  /** Records at most (sessions remembered); the least recently written slot is reused past it. */
  maxSessions?: number;
  /** O_DSYNC: every record on the disk before the write returns (survives power loss, costs a disk write per completion). */
  sync?: boolean;
  /** false: pwrite every update instead of storing into a mapping of the file (for comparison). */
  mmap?: boolean;
  /** Told once per problem found in the file (corrupt records, truncation); the file is still used. */
  warn?: (text: string) => void;
}

export interface Restored {
  session: Buffer;
  done: number;
}

/** The first 8 bytes equal (Buffer.equals is a native call, slower than this for 8 bytes). */
function same8(a: Buffer, b: Buffer): boolean {
  for (let i = 0; i < 8; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** FNV-1a over [from, to). */
function fnv1a(b: Buffer, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) {
    h ^= b[i];
    h = Math.imul(h, 0x01000193);
  }
  // Never 0: an all-zero record is an empty slot, not a valid one.
  return (h >>> 0) || 1;
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
  /** The file's mapping (null: pwrite instead). */
  private map: Buffer | null = null;
  private unmap: (() => void) | undefined;
  private readonly record = Buffer.alloc(RECORD);
  /** Session (latin1 key) → slot. */
  private readonly slots = new Map<string, number>();
  /** Per slot: the stamp it was last written with, for reuse past maxSessions; and which copy is next. */
  private readonly writtenAt: number[] = [];
  /** The last stamp written. */
  private stamp = 0;
  private readonly nextCopy: number[] = [];
  private max: number;
  /** Slots that hold no valid record (empty or corrupt): taken before the least recently written. */
  private readonly free: number[] = [];
  private readonly restoredList: Restored[] = [];
  /** The session written last and its slot (a copy: the caller's Buffer may change). */
  private readonly lastSession = Buffer.alloc(8, 0xff);
  private lastSlot = -1;

  private constructor(
    readonly file: string,
    fd: number,
    max: number,
  ) {
    this.fd = fd;
    this.max = max;
  }

  /** How updates reach the file: `mmap` (stores into a shared mapping) or `pwrite`. */
  get method(): 'mmap' | 'pwrite' {
    return this.map ? 'mmap' : 'pwrite';
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
      if (!opts.sync && opts.mmap !== false) w.mapFile();
    } catch (e) {
      w.close();
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
      warn(`delivery state file ${this.file} is not a spawn-red watermark file (${data.length < HEADER ? `only ${data.length} bytes` : 'bad header'}); copied to ${aside} and started afresh: messages finished before a crash may come again once`);
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
    const whole = fresh ? 0 : Math.floor((data.length - HEADER) / SLOT);
    if (!fresh && (data.length - HEADER) % SLOT !== 0) {
      warn(`delivery state file ${this.file} is truncated (${data.length} bytes, a partial slot at its end ignored)`);
    }
    // A file written with a larger bound keeps its size.
    this.max = Math.max(this.max, whole);
    const header = Buffer.alloc(HEADER);
    MAGIC.copy(header, 0);
    header[4] = VERSION;
    header.writeUInt32LE(RECORD, 8);
    header.writeUInt32LE(process.pid, 12);
    writeU64(header, 16, processStart(process.pid));
    try {
      if (fresh) fs.ftruncateSync(this.fd, 0);
      fs.writeSync(this.fd, header, 0, HEADER, 0);
      // Every slot written once, with real zeros: the disk blocks exist before any store into the
      // mapping needs them (a hole filled through a mapping on a full disk is a SIGBUS, not an error).
      const end = HEADER + this.max * SLOT;
      const from = HEADER + whole * SLOT;
      if (end > from) fs.writeSync(this.fd, Buffer.alloc(end - from), 0, end - from, from);
    } catch (e) {
      throw new WatermarkFileError(`cannot write the delivery state file ${this.file}: ${(e as Error).message}`);
    }
    for (let slot = 0; slot < this.max; slot++) {
      this.writtenAt.push(0);
      this.nextCopy.push(0);
    }

    let corrupt = 0;
    const best = new Map<string, { slot: number; done: number; stamp: number }>();
    for (let slot = 0; slot < whole; slot++) {
      const at = HEADER + slot * SLOT;
      let pick: { copy: number; key: string; done: number; stamp: number } | undefined;
      for (let copy = 0; copy < 2; copy++) {
        const r = data.subarray(at + copy * RECORD, at + (copy + 1) * RECORD);
        if (r.every((x) => x === 0)) continue;
        if (r.readUInt32LE(24) !== fnv1a(r, 0, 24)) {
          corrupt++;
          continue;
        }
        const c = { copy, key: r.subarray(0, 8).toString('latin1'), done: readU64(r, 8), stamp: readU64(r, 16) };
        if (!pick || c.stamp > pick.stamp || (c.stamp === pick.stamp && c.key === pick.key && c.done > pick.done)) pick = c;
      }
      if (!pick) {
        this.free.push(slot);
        continue;
      }
      this.writtenAt[slot] = pick.stamp;
      if (pick.stamp > this.stamp) this.stamp = pick.stamp;
      this.nextCopy[slot] = 1 - pick.copy;
      const had = best.get(pick.key);
      if (!had || pick.done > had.done) {
        if (had) this.free.push(had.slot);
        best.set(pick.key, { slot, done: pick.done, stamp: pick.stamp });
      } else this.free.push(slot);
    }
    if (corrupt > 0) {
      warn(`delivery state file ${this.file}: ${corrupt} corrupt record${corrupt === 1 ? '' : 's'} ignored (their senders' messages finished before a crash may come again once)`);
    }
    for (const [key, { slot, done }] of best) {
      this.slots.set(key, slot);
      this.restoredList.push({ session: Buffer.from(key, 'latin1'), done });
    }
    // Never-used slots after the file's old end are free too; free slots are taken lowest first.
    for (let slot = whole; slot < this.max; slot++) this.free.push(slot);
    this.free.sort((x, y) => y - x);
  }

  /** Maps the file (MAP_SHARED) for updates without a system call; stays on pwrite where that is not possible. */
  private mapFile(): void {
    const length = HEADER + this.max * SLOT;
    const mapped = mapShared(this.fd, length);
    if (!mapped) return;
    this.map = mapped.buffer;
    this.unmap = mapped.unmap;
  }

  /** What a previous run of this receiver had completed, per sender session. */
  restored(): Restored[] {
    return this.restoredList;
  }

  /**
   * Everything of `session` below `done` is complete. A few stores into the mapping (or one pwrite
   * of 32 bytes); throws only when a pwrite fails (disk full, file system gone), naming the path.
   */
  write(session: Buffer, done: number): void {
    if (this.fd < 0) return;
    // Completions come in runs of one session: its slot without a string key or a Map lookup.
    let slot: number;
    if (same8(session, this.lastSession)) slot = this.lastSlot;
    else {
      const key = session.toString('latin1');
      let found = this.slots.get(key);
      if (found === undefined) {
        found = this.freeSlot();
        this.slots.set(key, found);
      }
      slot = found;
      session.copy(this.lastSession, 0, 0, 8);
      this.lastSlot = slot;
    }
    const now = ++this.stamp;
    this.writtenAt[slot] = now;
    const copy = this.nextCopy[slot];
    this.nextCopy[slot] = 1 - copy;
    const at = HEADER + slot * SLOT + copy * RECORD;
    const map = this.map;
    const r = map ?? this.record;
    const o = map ? at : 0;
    for (let i = 0; i < 8; i++) r[o + i] = session[i];
    writeU64(r, o + 8, done);
    writeU64(r, o + 16, now);
    r.writeUInt32LE(fnv1a(r, o, o + 24), o + 24);
    if (map) return;
    try {
      fs.writeSync(this.fd, r, 0, RECORD, at);
    } catch (e) {
      throw new WatermarkFileError(`cannot write the delivery state file ${this.file}: ${(e as Error).message}`);
    }
  }

  private freeSlot(): number {
    const reuse = this.free.pop();
    if (reuse !== undefined) return reuse;
    let oldest = 0;
    for (let i = 1; i < this.writtenAt.length; i++) if (this.writtenAt[i] < this.writtenAt[oldest]) oldest = i;
    for (const [k, s] of this.slots) {
      if (s === oldest) {
        this.slots.delete(k);
        break;
      }
    }
    if (this.lastSlot === oldest) this.lastSlot = -1;
    this.lastSession.fill(0xff);
    return oldest;
  }

  /** Sessions with a slot. */
  get sessions(): number {
    return this.slots.size;
  }

  close(): void {
    if (this.fd < 0) return;
    // No store may reach the mapping once it is gone.
    this.map = null;
    this.unmap?.();
    this.unmap = undefined;
    try {
      fs.closeSync(this.fd);
    } catch {
      // already gone
    }
    this.fd = -1;
  }
}

/** mmap(MAP_SHARED) of a file through koffi (a dependency already, for libfabric); undefined where that cannot be done. */
function mapShared(fd: number, length: number): { buffer: Buffer; unmap: () => void } | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const koffi = require('koffi');
    libc ??= (() => {
      const lib = koffi.load('libc.so.6');
      return {
        mmap: lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
        munmap: lib.func('int munmap(void *addr, size_t length)'),
        address: (p: unknown) => koffi.address(p) as bigint,
        view: (p: unknown, n: number) => koffi.view(p, n) as ArrayBuffer,
      };
    })();
    const PROT_READ = 1;
    const PROT_WRITE = 2;
    const MAP_SHARED = 1;
    const ptr = libc.mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const addr = ptr === null ? 0n : libc.address(ptr);
    if (addr === 0n || addr === 0xffffffffffffffffn) return undefined; // MAP_FAILED
    const lib = libc;
    return { buffer: Buffer.from(lib.view(ptr, length)), unmap: () => void lib.munmap(ptr, length) };
  } catch {
    return undefined;
  }
}

let libc: { mmap: (...a: unknown[]) => unknown; munmap: (...a: unknown[]) => number; address(p: unknown): bigint; view(p: unknown, n: number): ArrayBuffer } | undefined;
