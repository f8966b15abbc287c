import koffi from 'koffi';
import { CONSTANTS as C, off, size } from './layout';
import { removeStaleShmRegions } from './shm-regions';
import {
  FabricError, API_VERSION, allocZero, check, close, cString, free, libfabric, opCall, opSlot, proto, reclaimSignals,
  readI32, readPtr, readStr, readU64, writeI32, writeU64,
} from './lib';

/** Room for a peer's fabric address (FI_NAME_MAX is 64; sockaddr_in6 28 bytes, shm names under 64). */
const ADDRESS_ROOM = 256;

/**
 * An RDM (reliable datagram) endpoint: one fabric, domain, completion queue, address vector and
 * endpoint, with send and receive of native buffers and manual progress (poll()).
 *
 * Rules libfabric imposes that this module keeps for its callers:
 * - buffers must not move while an operation uses them: NativeBuffer is a Buffer from
 *   Buffer.allocUnsafeSlow (off-heap, never moved) and the endpoint keeps a reference to it
 *   until its completion comes back;
 * - progress is manual: nothing moves (not even a send) unless poll() is called;
 * - a post may return -FI_EAGAIN (queue full, or tcp still connecting): post* returns false,
 *   the caller polls and tries again.
 */

export type Provider = 'efa' | 'tcp' | 'shm';

/** libfabric provider names: tcp alone is FI_EP_MSG; RDM over TCP is the rxm utility on top. */
export const PROVIDER_NAMES: Record<Provider, string> = { efa: 'efa', tcp: 'tcp;ofi_rxm', shm: 'shm' };

export interface NativeBuffer {
  buf: Buffer;
  addr: bigint;
  /** Memory-registration descriptor (fi_mr_desc) when the provider asks for FI_MR_LOCAL, else 0. */
  desc: bigint;
  mr: bigint;
}

export interface Completion {
  kind: 'send' | 'recv';
  /** The caller's tag given to postSend/postRecv. */
  tag: number;
  buffer: NativeBuffer;
  /** Bytes received (recv); the length sent (send). */
  len: number;
}

export interface EndpointOptions {
  /** Operations in flight at once (sends + receives). */
  depth?: number;
  /** Completion queue size. */
  cqSize?: number;
  /**
   * tcp provider: the local IP address to use. Without it the provider takes the host's first
   * interface (or FI_TCP_IFACE), not the one the stream's side channel uses: a stream between
   * two processes on 127.0.0.1 would cross eth0's address.
   */
  sourceHost?: string;
}

interface Pending {
  kind: 'send' | 'recv';
  tag: number;
  buffer: NativeBuffer;
  len: number;
  /** sendv: the caller's buffers, referenced until completion so they are not freed under the provider. */
  parts?: Buffer[];
}

/** Most iovec entries a postSendv takes (beyond the provider's own iov_limit). */
export const MAX_IOV = 8;
const IOVEC = 16;

const CQ_BATCH = 16;
const MSG_ENTRY = size('fi_cq_msg_entry');
const CONTEXT = size('fi_context2');

export class Endpoint {
  /** This endpoint's fabric address, to give to peers (their insertPeer). */
  readonly address: Buffer;
  /** The provider libfabric chose, e.g. "tcp;ofi_rxm". */
  readonly providerName: string;
  readonly maxMsgSize: number;
  /** The provider wants local buffers registered (FI_MR_LOCAL in mr_mode). */
  readonly mrLocal: boolean;
  /** Buffers one postSendv may gather (the provider's tx iov_limit, at most MAX_IOV); 0: no fi_sendv. */
  readonly iovLimit: number;

  private info = 0n;
  private fabric = 0n;
  private domain = 0n;
  private cq = 0n;
  private av = 0n;
  private ep = 0n;
  private readonly mrs = new Set<bigint>();
  // One fi_context2 per operation in flight: its address is the op's context, which the
  // completion hands back; the provider may use the 64 bytes as scratch (FI_CONTEXT2 mode).
  private contexts: bigint;
  private readonly pending: (Pending | undefined)[];
  private readonly idle: number[];
  private cqBuf: bigint;
  private scratch: bigint;
  // Data-path function pointers, read once after fi_enable (enable may swap the ops tables).
  private sendFn = 0n;
  private recvFn = 0n;
  private cqReadFn = 0n;
  private sendvFn = 0n;
  private iov: bigint;

  constructor(
    readonly provider: Provider,
    options: EndpointOptions = {},
  ) {
    const lib = libfabric();
    const depth = options.depth ?? 64;
    this.contexts = allocZero(depth * CONTEXT);
    this.pending = new Array(depth).fill(undefined);
    this.idle = Array.from({ length: depth }, (_, i) => depth - 1 - i);
    this.cqBuf = allocZero(CQ_BATCH * MSG_ENTRY);
    this.scratch = allocZero(256);
    this.iov = allocZero(MAX_IOV * IOVEC);
    if (provider === 'shm' || provider === 'efa') removeStaleShmRegions();
    try {
      this.info = getinfo(provider, options.sourceHost);
      const domainAttr = readPtr(this.info, off('fi_info', 'domain_attr'));
      const epAttr = readPtr(this.info, off('fi_info', 'ep_attr'));
      const fabricAttr = readPtr(this.info, off('fi_info', 'fabric_attr'));
      this.providerName = readStr(fabricAttr, off('fi_fabric_attr', 'prov_name')) ?? PROVIDER_NAMES[provider];
      this.mrLocal = (readI32(domainAttr, off('fi_domain_attr', 'mr_mode')) & C.FI_MR_LOCAL) !== 0;
      const txAttr = readPtr(this.info, off('fi_info', 'tx_attr'));
      const iovLimit = Math.min(Number(readU64(txAttr, off('fi_tx_attr', 'iov_limit'))), MAX_IOV);
      this.maxMsgSize = Math.min(Number(readU64(epAttr, off('fi_ep_attr', 'max_msg_size'))), Number.MAX_SAFE_INTEGER);

      const out = this.scratch; // pointer-sized out-parameter
      check('fi_fabric', lib.fabric(fabricAttr, out, null));
      this.fabric = readPtr(out, 0);
      check('fi_domain', opCall('fi_domain', this.fabric, off('fid_fabric', 'ops'), off('fi_ops_fabric', 'domain'), proto.domain, this.fabric, this.info, out, null));
      this.domain = readPtr(out, 0);

      const cqAttr = allocZero(size('fi_cq_attr'));
      writeU64(cqAttr, off('fi_cq_attr', 'size'), BigInt(options.cqSize ?? Math.max(depth * 2, 128)));
      writeI32(cqAttr, off('fi_cq_attr', 'format'), C.FI_CQ_FORMAT_MSG);
      // No wait object: we only poll (fi_cq_sread without one crashes; EFA CQs have none).
      writeI32(cqAttr, off('fi_cq_attr', 'wait_obj'), C.FI_WAIT_NONE);
      try {
        check('fi_cq_open', opCall('fi_cq_open', this.domain, off('fid_domain', 'ops'), off('fi_ops_domain', 'cq_open'), proto.cq_open, this.domain, cqAttr, out, null));
      } finally {
        free(cqAttr);
      }
      this.cq = readPtr(out, 0);

      const avAttr = allocZero(size('fi_av_attr'));
      writeI32(avAttr, off('fi_av_attr', 'type'), C.FI_AV_TABLE);
      try {
        check('fi_av_open', opCall('fi_av_open', this.domain, off('fid_domain', 'ops'), off('fi_ops_domain', 'av_open'), proto.av_open, this.domain, avAttr, out, null));
      } finally {
        free(avAttr);
      }
      this.av = readPtr(out, 0);

      check('fi_endpoint', opCall('fi_endpoint', this.domain, off('fid_domain', 'ops'), off('fi_ops_domain', 'endpoint'), proto.endpoint, this.domain, this.info, out, null));
      this.ep = readPtr(out, 0);

      // fi_ep_bind and fi_enable go through the endpoint's generic fid ops (bind, control).
      const fidOps = off('fid', 'ops');
      check('fi_ep_bind(av)', opCall('fi_ep_bind', this.ep, fidOps, off('fi_ops', 'bind'), proto.bind, this.ep, this.av, 0n));
      check('fi_ep_bind(cq)', opCall('fi_ep_bind', this.ep, fidOps, off('fi_ops', 'bind'), proto.bind, this.ep, this.cq, C.FI_TRANSMIT | C.FI_RECV));
      check('fi_enable', opCall('fi_enable', this.ep, fidOps, off('fi_ops', 'control'), proto.control, this.ep, C.FI_ENABLE, null));

      const addr = allocZero(1024);
      try {
        writeU64(out, 0, 1024n);
        check('fi_getname', opCall('fi_getname', this.ep, off('fid_ep', 'cm'), off('fi_ops_cm', 'getname'), proto.getname, this.ep, addr, out));
        const len = Number(readU64(out, 0));
        this.address = Buffer.from(koffi.view(addr, len).slice(0));
      } finally {
        free(addr);
      }

      this.sendFn = opSlot('fi_send', this.ep, off('fid_ep', 'msg'), off('fi_ops_msg', 'send'));
      this.recvFn = opSlot('fi_recv', this.ep, off('fid_ep', 'msg'), off('fi_ops_msg', 'recv'));
      this.cqReadFn = opSlot('fi_cq_read', this.cq, off('fid_cq', 'ops'), off('fi_ops_cq', 'read'));
      try {
        this.sendvFn = opSlot('fi_sendv', this.ep, off('fid_ep', 'msg'), off('fi_ops_msg', 'sendv'));
      } catch {
        this.sendvFn = 0n; // no fi_sendv: callers copy into one buffer instead
      }
      this.iovLimit = this.sendvFn && iovLimit >= 2 ? iovLimit : 0;
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Adds a peer's address (its `address`) to the address vector; returns its fi_addr_t. */
  insertPeer(address: Buffer): bigint {
    // libfabric reads as many bytes as its address format has, whatever a peer sent: a short
    // address (garbage on the side channel) is read from zeroed room, never past the allocation.
    if (address.length === 0 || address.length > ADDRESS_ROOM) throw new FabricError('fi_av_insert', 22, `fi_av_insert: an address of ${address.length} bytes is not one`);
    // A sockaddr of an unknown family leaves the tcp provider's address vector refusing every
    // later insert (libfabric 1.17): a peer's sockaddr must be of our family and size.
    const family = this.address.length === 16 || this.address.length === 28 ? this.address.readUInt16LE(0) : -1;
    if ((family === 2 || family === 10) && (address.length !== this.address.length || address.readUInt16LE(0) !== family)) {
      throw new FabricError('fi_av_insert', 22, `fi_av_insert: not an address of this provider (${address.toString('hex')})`);
    }
    const addr = koffi.alloc('uint8_t', ADDRESS_ROOM) as bigint;
    try {
      const view = Buffer.from(koffi.view(addr, ADDRESS_ROOM));
      view.fill(0);
      view.set(address);
      const n = check('fi_av_insert', opCall('fi_av_insert', this.av, off('fid_av', 'ops'), off('fi_ops_av', 'insert'), proto.av_insert, this.av, addr, 1, this.scratch, 0n, null));
      if (n !== 1) throw new FabricError('fi_av_insert', 22, `fi_av_insert: address not accepted (${address.toString('hex')})`);
      return readU64(this.scratch, 0);
    } finally {
      koffi.free(addr);
    }
  }

  /** A buffer libfabric can use: never moves; registered with the domain if the provider asks. */
  allocBuffer(bytes: number): NativeBuffer {
    const buf = Buffer.allocUnsafeSlow(bytes);
    const addr = koffi.address(buf) as bigint;
    if (!this.mrLocal) return { buf, addr, desc: 0n, mr: 0n };
    const access = C.FI_SEND | C.FI_RECV;
    check('fi_mr_reg', opCall('fi_mr_reg', this.domain, off('fid_domain', 'mr'), off('fi_ops_mr', 'reg'), proto.mr_reg, this.domain, addr, bytes, access, 0n, 0n, 0n, this.scratch, null));
    const mr = readPtr(this.scratch, 0);
    this.mrs.add(mr);
    return { buf, addr, desc: readPtr(mr, off('fid_mr', 'mem_desc')), mr };
  }

  /** Deregisters a buffer (when it was registered); it must have no operation in flight. */
  releaseBuffer(b: NativeBuffer): void {
    if (b.mr && this.mrs.delete(b.mr)) close('fi_close(mr)', b.mr);
  }

  /** Posts a receive into `b`; false when the provider says try again (poll first). */
  postRecv(b: NativeBuffer, tag: number, len = b.buf.length): boolean {
    return this.post('recv', this.recvFn, proto.recv, C.FI_ADDR_UNSPEC, b, tag, len);
  }

  /** Posts a send of the first `len` bytes of `b` to `peer`; false when asked to try again. */
  postSend(peer: bigint, b: NativeBuffer, len: number, tag: number): boolean {
    return this.post('send', this.sendFn, proto.send, peer, b, tag, len);
  }

  /**
   * Posts one send gathering `head` (its first `headLen` bytes) and then `parts`, without copying
   * them (fi_sendv). Only where no registration is needed (!mrLocal) and `1 + parts.length <=
   * iovLimit`. The parts are referenced until completion; they must not be changed before then.
   */
  postSendv(peer: bigint, head: NativeBuffer, headLen: number, parts: Buffer[], tag: number): boolean {
    if (!this.ep) throw new FabricError('fi_sendv', 9, 'the fabric endpoint is closed');
    if (this.mrLocal || parts.length + 1 > this.iovLimit) throw new FabricError('fi_sendv', 22, `fi_sendv: ${parts.length + 1} buffers, the provider takes ${this.iovLimit} unregistered`);
    const slot = this.idle.pop();
    if (slot === undefined) return false;
    let len = headLen;
    writeU64(this.iov, 0, head.addr);
    writeU64(this.iov, 8, BigInt(headLen));
    for (let i = 0; i < parts.length; i++) {
      writeU64(this.iov, (i + 1) * IOVEC, koffi.address(parts[i]) as bigint);
      writeU64(this.iov, (i + 1) * IOVEC + 8, BigInt(parts[i].length));
      len += parts[i].length;
    }
    const ctx = this.contexts + BigInt(slot * CONTEXT);
    // The iovec array may be reused once the call returns (providers copy it); desc NULL: unregistered.
    const rc = Number(koffi.call(this.sendvFn, proto.sendv, this.ep, this.iov, null, parts.length + 1, peer, ctx));
    if (rc === -C.FI_EAGAIN) {
      this.idle.push(slot);
      return false;
    }
    if (rc < 0) this.idle.push(slot);
    check('fi_sendv', rc);
    this.pending[slot] = { kind: 'send', tag, buffer: head, len, parts };
    return true;
  }

  /** Operations posted and not yet completed. */
  get inFlight(): number {
    return this.pending.length - this.idle.length;
  }

  private post(kind: 'send' | 'recv', fn: bigint, type: typeof proto.send, peer: bigint, b: NativeBuffer, tag: number, len: number): boolean {
    // After close() the function pointers point into freed provider memory: a call would crash.
    if (!this.ep) throw new FabricError(kind === 'send' ? 'fi_send' : 'fi_recv', 9, 'the fabric endpoint is closed');
    const slot = this.idle.pop();
    if (slot === undefined) return false; // depth reached: poll, then post again
    const ctx = this.contexts + BigInt(slot * CONTEXT);
    const rc = Number(koffi.call(fn, type, this.ep, b.addr, len, b.desc || null, peer, ctx));
    if (rc === -C.FI_EAGAIN) {
      this.idle.push(slot);
      return false;
    }
    if (rc < 0) this.idle.push(slot);
    check(kind === 'send' ? 'fi_send' : 'fi_recv', rc);
    this.pending[slot] = { kind, tag, buffer: b, len };
    return true;
  }

  /**
   * Drives progress and returns what completed (at most 16 per call; empty when nothing did).
   * Never blocks. A failed operation throws a FabricError with the provider's reason and, in
   * `op`, the operation (its buffer is the caller's again); the next poll() carries on.
   */
  /** Up to `max` completions (at most CQ_BATCH). */
  poll(max = CQ_BATCH): Completion[] {
    if (!this.cq) throw new FabricError('fi_cq_read', 9, 'the fabric endpoint is closed');
    const n = Number(koffi.call(this.cqReadFn, proto.cq_read, this.cq, this.cqBuf, Math.min(max, CQ_BATCH)));
    if (n === -C.FI_EAGAIN) return [];
    if (n === -C.FI_EAVAIL) this.throwCqError();
    check('fi_cq_read', n);
    const done: Completion[] = [];
    for (let i = 0; i < n; i++) {
      const entry = this.cqBuf + BigInt(i * MSG_ENTRY);
      const p = this.take(readPtr(entry, off('fi_cq_msg_entry', 'op_context')));
      const len = p.kind === 'recv' ? Number(readU64(entry, off('fi_cq_msg_entry', 'len'))) : p.len;
      done.push({ kind: p.kind, tag: p.tag, buffer: p.buffer, len });
    }
    return done;
  }

  private take(ctx: bigint): Pending {
    const slot = Number((ctx - this.contexts) / BigInt(CONTEXT));
    const p = this.pending[slot];
    if (!p) throw new FabricError('fi_cq_read', 22, `fi_cq_read: completion for an unknown operation (context ${ctx})`);
    this.pending[slot] = undefined;
    this.idle.push(slot);
    return p;
  }

  private throwCqError(): never {
    const entry = allocZero(size('fi_cq_err_entry'));
    try {
      check('fi_cq_readerr', opCall('fi_cq_readerr', this.cq, off('fid_cq', 'ops'), off('fi_ops_cq', 'readerr'), proto.cq_readerr, this.cq, entry, 0n));
      const err = readI32(entry, off('fi_cq_err_entry', 'err'));
      const ctx = readPtr(entry, off('fi_cq_err_entry', 'op_context'));
      const p = ctx ? this.take(ctx) : undefined;
      const what = p ? `fi_${p.kind} (tag ${p.tag})` : 'fi_cq_read';
      const op = p ? { kind: p.kind, tag: p.tag, buffer: p.buffer, len: p.len } : undefined;
      throw new FabricError(what, err, `${what} failed: ${libfabric().strerror(err)} (-${err}, provider error ${readI32(entry, off('fi_cq_err_entry', 'prov_errno'))})`, op);
    } finally {
      free(entry);
    }
  }

  /**
   * Closes everything in reverse order of opening. Safe to call twice.
   *
   * A provider may refuse to close its domain (EBUSY) because it still holds operations it will
   * never complete: over tcp, rxm keeps the rendezvous sends to a receiver that was killed, and
   * their registrations with them. It may still use their contexts and buffers, so then nothing
   * of ours is freed: the endpoint, with every buffer of its unfinished operations, is kept for
   * the life of the process (`keptBusy`), and close() throws a FabricError with code EBUSY that
   * says so. The endpoint is closed all the same: a second close() does nothing.
   */
  close(): void {
    const closeFid = (what: string, fid: bigint) => {
      if (fid) close(what, fid);
    };
    closeFid('fi_close(ep)', this.ep);
    this.ep = 0n;
    for (const mr of this.mrs) closeFid('fi_close(mr)', mr);
    this.mrs.clear();
    closeFid('fi_close(av)', this.av);
    this.av = 0n;
    closeFid('fi_close(cq)', this.cq);
    this.cq = 0n;
    try {
      closeFid('fi_close(domain)', this.domain);
    } catch (e) {
      if (!(e instanceof FabricError) || e.code !== EBUSY) throw e;
      keptBusy.add(this);
      const unfinished = this.inFlight;
      this.domain = this.fabric = this.info = 0n;
      this.contexts = this.cqBuf = this.scratch = this.iov = 0n;
      const ops = unfinished === 1 ? '1 operation' : `${unfinished} operations`;
      throw new FabricError(
        'fi_close(domain)',
        EBUSY,
        `the ${this.providerName} provider still holds ${ops} it never completed (sends to a peer that went away): its domain stays open, and their buffers allocated, until the process exits (fi_close(domain): ${e.message.replace(/^fi_close\(domain\): /, '')})`,
      );
    }
    this.domain = 0n;
    closeFid('fi_close(fabric)', this.fabric);
    this.fabric = 0n;
    if (this.info) libfabric().freeinfo(this.info);
    this.info = 0n;
    this.pending.fill(undefined);
    for (const p of [this.contexts, this.cqBuf, this.scratch, this.iov]) if (p) free(p);
    this.contexts = this.cqBuf = this.scratch = this.iov = 0n;
  }
}

/** fi_getinfo for an RDM endpoint with FI_MSG on `provider`; the first match (free with freeinfo). */
function getinfo(provider: Provider, sourceHost?: string): bigint {
  const lib = libfabric();
  const hints = lib.dupinfo(0n); // fi_allocinfo() is fi_dupinfo(NULL)
  if (!hints) throw new FabricError('fi_allocinfo', 12, 'fi_allocinfo: out of memory');
  const out = allocZero(8);
  try {
    writeU64(hints, off('fi_info', 'caps'), C.FI_MSG);
    // We hand every operation a 64-byte fi_context2, so providers needing one may use it.
    writeU64(hints, off('fi_info', 'mode'), C.FI_CONTEXT | C.FI_CONTEXT2);
    writeI32(readPtr(hints, off('fi_info', 'ep_attr')), off('fi_ep_attr', 'type'), C.FI_EP_RDM);
    // Messages from one sender complete in the order sent (send-after-send).
    writeU64(readPtr(hints, off('fi_info', 'tx_attr')), off('fi_tx_attr', 'msg_order'), C.FI_ORDER_SAS);
    writeU64(readPtr(hints, off('fi_info', 'rx_attr')), off('fi_rx_attr', 'msg_order'), C.FI_ORDER_SAS);
    // The memory-registration modes we can honour (efa asks for all of these; tcp for none).
    const domainAttr = readPtr(hints, off('fi_info', 'domain_attr'));
    writeI32(domainAttr, off('fi_domain_attr', 'mr_mode'), C.FI_MR_LOCAL | C.FI_MR_VIRT_ADDR | C.FI_MR_ALLOCATED | C.FI_MR_PROV_KEY);
    writeI32(domainAttr, off('fi_domain_attr', 'av_type'), C.FI_AV_TABLE);
    // fi_freeinfo(hints) frees prov_name, so it must be malloc'd.
    writeU64(readPtr(hints, off('fi_info', 'fabric_attr')), off('fi_fabric_attr', 'prov_name'), cString(PROVIDER_NAMES[provider]));

    // tcp: bind the endpoint to the given local address (FI_SOURCE: `node` names our side).
    const source = provider === 'tcp' && sourceHost ? sourceHost : null;
    const rc = lib.getinfo(API_VERSION, source, null, source ? C.FI_SOURCE : 0n, hints, out);
    reclaimSignals();
    if (rc === -C.FI_ENODATA) {
      const why = provider === 'efa' ? 'no EFA device' : `libfabric at ${lib.path} has no usable ${PROVIDER_NAMES[provider]} provider`;
      throw new FabricError('fi_getinfo', C.FI_ENODATA, `provider ${provider} not available: ${why} (fi_getinfo: ${lib.strerror(C.FI_ENODATA)})`);
    }
    check('fi_getinfo', rc);
    return readPtr(out, 0);
  } finally {
    lib.freeinfo(hints);
    free(out);
  }
}

const EBUSY = 16;
/** Endpoints whose domain the provider kept busy at close (see Endpoint.close): never freed. */
const keptBusy = new Set<Endpoint>();

/** Opens an RDM endpoint on `provider`; see Endpoint. */
export function openEndpoint(provider: Provider, options?: EndpointOptions): Endpoint {
  return new Endpoint(provider, options);
}
