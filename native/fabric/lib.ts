import koffi from 'koffi';
import { CONSTANTS as C, off } from './layout';

/**
 * Loading libfabric and calling it through koffi.
 *
 * Exported functions are bound by symbol version (dlvsym), because libfabric exports several
 * versions of fi_getinfo/fi_dupinfo/fi_freeinfo/fi_fabric with different struct layouts and
 * our layout.ts matches FABRIC_1.3 (getinfo, dupinfo, freeinfo) and FABRIC_1.1 (fabric).
 * Everything else is a static inline in the headers, reached through ops tables: opCall().
 * Pointers are BigInt (koffi 3).
 */

export const INSTALL_HINT = 'apt-get install libfabric1 (Debian/Ubuntu), or the AWS EFA installer';
export const API_VERSION = (C.FI_MAJOR_VERSION << 16) | C.FI_MINOR_VERSION;

/** A libfabric call failed: `fn` is the libfabric function, `code` the positive fi_errno. */
export class FabricError extends Error {
  constructor(
    readonly fn: string,
    readonly code: number,
    message: string,
    /** For a failed operation read from a completion queue: what it was (its buffer is free again). */
    readonly op?: { kind: 'send' | 'recv'; tag: number; buffer: unknown; len: number },
  ) {
    super(message);
    this.name = 'FabricError';
  }
}

/**
 * Where we look, in order. SPAWN_LIBFABRIC, when set, is the only place (an explicit choice
 * should not silently fall back). /opt/amazon/efa comes before the system path because on AWS
 * images the system may also carry a distribution libfabric built without the efa provider
 * (Debian's has none).
 */
export function libraryCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.SPAWN_LIBFABRIC) return [env.SPAWN_LIBFABRIC];
  return ['/opt/amazon/efa/lib64/libfabric.so.1', '/opt/amazon/efa/lib/libfabric.so.1', 'libfabric.so.1'];
}

const RTLD_NOW = 2;
const libc = koffi.load('libc.so.6');
const dlopen = libc.func('void *dlopen(const char *, int)');
const dlerror = libc.func('const char *dlerror(void)');
const dlvsym = libc.func('void *dlvsym(void *, const char *, const char *)');
const strdup = libc.func('void *strdup(const char *)');

/** Prototypes of the ops-table slots we call; names follow the inline wrappers in the headers.
 *  ssize_t is int64_t on x86_64 (koffi has no ssize_t). */
export const proto = {
  close: koffi.proto('int fi_close_t(void *fid)'),
  bind: koffi.proto('int fi_bind_t(void *fid, void *bfid, uint64_t flags)'),
  control: koffi.proto('int fi_control_t(void *fid, int command, void *arg)'),
  domain: koffi.proto('int fi_domain_t(void *fabric, void *info, void *domain_out, void *context)'),
  av_open: koffi.proto('int fi_av_open_t(void *domain, void *attr, void *av_out, void *context)'),
  cq_open: koffi.proto('int fi_cq_open_t(void *domain, void *attr, void *cq_out, void *context)'),
  endpoint: koffi.proto('int fi_endpoint_t(void *domain, void *info, void *ep_out, void *context)'),
  mr_reg: koffi.proto(
    'int fi_mr_reg_t(void *fid, void *buf, size_t len, uint64_t access, uint64_t offset, uint64_t key, uint64_t flags, void *mr_out, void *context)',
  ),
  getname: koffi.proto('int fi_getname_t(void *fid, void *addr, void *addrlen)'),
  av_insert: koffi.proto('int fi_av_insert_t(void *av, void *addr, size_t count, void *fi_addr, uint64_t flags, void *context)'),
  recv: koffi.proto('int64_t fi_recv_t(void *ep, void *buf, size_t len, void *desc, uint64_t src_addr, void *context)'),
  send: koffi.proto('int64_t fi_send_t(void *ep, void *buf, size_t len, void *desc, uint64_t dest_addr, void *context)'),
  sendv: koffi.proto('int64_t fi_sendv_t(void *ep, void *iov, void *desc, size_t count, uint64_t dest_addr, void *context)'),
  cq_read: koffi.proto('int64_t fi_cq_read_t(void *cq, void *buf, size_t count)'),
  cq_readerr: koffi.proto('int64_t fi_cq_readerr_t(void *cq, void *buf, uint64_t flags)'),
};

export interface Libfabric {
  path: string;
  getinfo(version: number, node: string | null, service: string | null, flags: bigint, hints: bigint, out: bigint): number;
  dupinfo(info: bigint): bigint;
  freeinfo(info: bigint): void;
  fabric(attr: bigint, out: bigint, context: bigint | null): number;
  strerror(code: number): string;
}

let loaded: Libfabric | undefined;

/** Loads libfabric once; throws a FabricError naming every place tried and how to install it. */
export function libfabric(): Libfabric {
  if (loaded) return loaded;
  const tried: string[] = [];
  for (const candidate of libraryCandidates()) {
    const handle = dlopen(candidate, RTLD_NOW) as bigint | null;
    if (!handle) {
      tried.push(`${candidate} (${dlerror() ?? 'not found'})`);
      continue;
    }
    const sym = (name: string, version: string, signature: string) => {
      const p = dlvsym(handle, name, version) as bigint | null;
      if (!p) throw new FabricError('dlvsym', C.FI_ENOENT, `${candidate} has no ${name}@${version}: libfabric too old?`);
      const t = koffi.proto(signature);
      return (...args: unknown[]) => koffi.call(p, t, ...args);
    };
    const getinfo = sym('fi_getinfo', 'FABRIC_1.3', 'int fi_getinfo_v(uint32_t, const char *, const char *, uint64_t, void *, void *)');
    const dupinfo = sym('fi_dupinfo', 'FABRIC_1.3', 'void *fi_dupinfo_v(void *)');
    const freeinfo = sym('fi_freeinfo', 'FABRIC_1.3', 'void fi_freeinfo_v(void *)');
    const fabric = sym('fi_fabric', 'FABRIC_1.1', 'int fi_fabric_v(void *, void *, void *)');
    const strerror = sym('fi_strerror', 'FABRIC_1.0', 'const char *fi_strerror_v(int)');
    loaded = {
      path: candidate,
      getinfo: (v, n, s, f, h, o) => getinfo(v, n, s, f, h, o) as number,
      dupinfo: (i) => (dupinfo(i) as bigint | null) ?? 0n,
      freeinfo: (i) => void freeinfo(i),
      fabric: (a, o, c) => fabric(a, o, c) as number,
      strerror: (code) => strerror(code) as string,
    };
    return loaded;
  }
  throw new FabricError(
    'dlopen',
    C.FI_ENOENT,
    `libfabric is not installed: looked in ${tried.join('; ')}. Install it with: ${INSTALL_HINT}, or set SPAWN_LIBFABRIC to its path`,
  );
}

/** Throws a FabricError for a negative libfabric return code; returns non-negative ones. */
export function check(fn: string, rc: number | bigint): number {
  const n = Number(rc);
  if (n >= 0) return n;
  throw new FabricError(fn, -n, `${fn}: ${libfabric().strerror(-n)} (-${-n})`);
}

// Raw memory access on native addresses.
export const readPtr = (p: bigint, offset: number): bigint => BigInt(koffi.decode(p, offset, 'uint64_t'));
export const readU64 = readPtr;
export const readI32 = (p: bigint, offset: number): number => koffi.decode(p, offset, 'int32_t') as number;
/** The C string a `char *` field at p + offset points to (koffi follows the pointer). */
export const readStr = (p: bigint, offset: number): string | null => koffi.decode(p, offset, 'char *') as string | null;
export const writeU64 = (p: bigint, offset: number, v: bigint): void => koffi.encode(p, offset, 'uint64_t', v);
export const writeI32 = (p: bigint, offset: number, v: number): void => koffi.encode(p, offset, 'int32_t', v);
/** A malloc'd copy of `s`, for fields libfabric frees itself (fi_freeinfo frees prov_name). */
export const cString = (s: string): bigint => strdup(s) as bigint;

/** Zeroed native memory (koffi.alloc), freed with koffi.free. */
export function allocZero(bytes: number): bigint {
  const p = koffi.alloc('uint8_t', bytes) as bigint;
  new Uint8Array(koffi.view(p, bytes)).fill(0);
  return p;
}
export const free = (p: bigint): void => koffi.free(p);

/**
 * Calls slot `slot` of the ops table stored at `obj + tableOffset`, after the FI_CHECK_OP
 * checks: table non-NULL, table size covers the slot, slot non-NULL. Returns the raw result.
 */
export function opCall(
  what: string,
  obj: bigint,
  tableOffset: number,
  slot: number,
  type: (typeof proto)[keyof typeof proto],
  ...args: unknown[]
): number {
  const fn = opSlot(what, obj, tableOffset, slot);
  return Number(koffi.call(fn, type, ...args));
}

/** The function pointer in an ops-table slot, checked; hot paths cache it (see endpoint.ts). */
export function opSlot(what: string, obj: bigint, tableOffset: number, slot: number): bigint {
  if (!obj) throw new FabricError(what, 22, `${what}: object is NULL`);
  const table = readPtr(obj, tableOffset);
  const fn = table && readU64(table, 0) > BigInt(slot) ? readPtr(table, slot) : 0n;
  if (!fn) throw new FabricError(what, 38, `${what}: not supported by this provider (-FI_ENOSYS)`);
  return fn;
}

/** fi_close(fid): `fid.ops->close`. */
export function close(what: string, fid: bigint): void {
  check(what, opCall(what, fid, off('fid', 'ops'), off('fi_ops', 'close'), proto.close, fid));
}

/**
 * libfabric's shm provider, initialised by the first fi_getinfo whatever provider is asked for,
 * installs its own handlers for SIGINT and SIGTERM (to remove its shared-memory files) over the
 * ones Node has, and its handler ends the process with exit code 1: Node's listeners never run,
 * so Node-RED would not stop its flows. Node (libuv) installs its handler for a signal again when
 * the first listener for it is added: take the listeners off and put them back. Without
 * listeners, shm's handler stays (the process still ends, and its files are removed).
 */
let signalsReclaimed = false;
export function reclaimSignals(): void {
  if (signalsReclaimed) return;
  signalsReclaimed = true;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    const listeners = process.rawListeners(sig) as Array<(...args: unknown[]) => void>;
    if (listeners.length === 0) continue;
    process.removeAllListeners(sig);
    for (const l of listeners) process.on(sig, l);
  }
}
