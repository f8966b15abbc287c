import net from 'net';
import { WireMessage } from '../codec';
import { errorText, StreamError } from '../errors';
import { RECEIVE_YIELD_BYTES } from '../gc-pacer';
import { bindEach, watchForNoPeer } from '../peer-watch';
import { decodeReceived } from '../receiver';
import { DETACH_BYTES, Format, SendCallback, Sender } from '../sender';
import type { StreamStats, StreamStatus } from '../zmq';
import { Channel, CHANNEL_VERSION, ChannelMessage, framesMessage, framesOf } from './channel';
import { CHUNK_HEADER, MessageCursor, Reassembler, writeChunkHeader } from './chunks';
import { Completion, Endpoint, EndpointOptions, NativeBuffer, openEndpoint, Provider } from './endpoint';
import { FabricError } from './lib';
import { Progress } from './progress';

/**
 * Message streams over libfabric RDM endpoints: the output side (`openFabricOut`, behind
 * "rdma out") and the input side (`openFabricIn`, behind "efa in").
 *
 * - Flow control is by credits: a receiver posts receive buffers for each sender that connects
 *   and tells it how many (one credit per buffer); the sender sends a chunk only against a
 *   credit, and the receiver hands a credit back each time it has copied a chunk out and posted
 *   its buffer again. A sender therefore never overruns a receiver, and a slow receiver slows
 *   its sender (backpressure, as with push/pull), never drops.
 * - Messages are the frame sets of native/sender.ts (same encoding and batching as the ZeroMQ
 *   nodes), cut into chunks and rebuilt in order: see chunks.ts.
 * - Fabric addresses, credits, wake-ups and "gone" travel over a TCP side channel on the
 *   stage's port: see channel.ts.
 * - Progress runs on the event loop in bounded steps (progress.ts): never blocking, backing off
 *   when idle.
 * - Delivery is at most once: a message fully handed to the fabric when its receiver dies is
 *   lost with it; a message caught half-sent fails with EPEERGONE (its done() gets the error).
 *   Exactly once: the delivery engine drives these streams through their `links` hook (the output
 *   side's Sender hands it every frame set) and `sendLink` (native/delivery/fabric-links.ts).
 */

export interface FabricCommonConfig {
  provider: Provider;
  format: Format;
  /** Largest payload in bytes; 0 for no limit. */
  maxMessageSize: number;
  /** Bytes per chunk, header included: the receive buffers' size (default 1 MiB + 64 KiB). */
  chunkBytes?: number;
  /**
   * Opens the endpoint (default: endpoint.ts openEndpoint). For tests only: a wrapper can make
   * buffer registration (fi_mr_reg, efa only) fail on the tcp and shm providers.
   */
  openEndpoint?: (provider: Provider, options: EndpointOptions) => Endpoint;
}

export interface FabricOutConfig extends FabricCommonConfig {
  /** Side-channel listen address and port. */
  host: string;
  port: number;
  highWater: number;
  queueLimit: number;
  batch: boolean;
  /** Send buffers (chunks in flight at once, over all receivers; default 16). */
  sendBuffers?: number;
  /** Milliseconds without a receiver, while messages wait, before ENOPEER (default 5000). */
  noPeerMs?: number;
  /** Exactly-once: the delivery engine's link layer (native/delivery/fabric-links.ts) drives this stream. */
  links?: FabricOutLinks;
}

/**
 * The hook of a link layer above the output side (exactly-once delivery), as the QUIC stream's
 * (native/quic/stream.ts): the stream's one Sender (encoding, batching, queue limit, backpressure)
 * hands every frame set to `transmit` instead of sending it round-robin; the link layer addresses
 * them to one receiver each (`sendLink`) and gets what receivers send back over the side channel.
 * Receivers are named by a key that lives as long as their connection.
 */
export interface FabricOutLinks {
  /** Frames a receiver sent over the side channel. */
  control(key: string, name: string, frames: Buffer[]): void;
  /** Every frame set the Sender takes off its queue (engine.transmit). */
  transmit(frames: Buffer[]): Promise<void>;
  /** Bytes the link layer adds to a frame set: batches are that much smaller, so one still travels as one chunk. */
  readonly overheadBytes: number;
  /** Receivers the link layer hears from (ENOPEER counts these, not side-channel connections). */
  readonly peers: number;
  /** Messages sent and not yet acknowledged. */
  readonly inFlight: number;
  /** Waits, up to `ms`, until everything sent is acknowledged. */
  settle(ms: number): Promise<void>;
  /** Stops the link layer; returns the messages left unacknowledged. */
  close(): number;
}

export interface FabricInConfig extends FabricCommonConfig {
  /** The senders' side channels: `tcp://host:port`. */
  connect: Array<{ host: string; port: number }>;
  /** Receive buffers posted for each sender (default 16). */
  credits?: number;
  reconnectMs: number;
  /** Exactly-once: the delivery engine's link layer (native/delivery/fabric-links.ts) takes the frame sets. */
  links?: FabricInLinks;
}

/** The hook of a link layer above the input side: senders are named by their `host:port`. */
export interface FabricInLinks {
  /** A frame set as the sender sent it, not decoded. */
  frames(key: string, frames: Buffer[]): void;
  /** False while the link layer holds too much not yet done: the input stops reading (no credits go back). */
  readable(): boolean;
  whenReadable(): Promise<void>;
}

export interface FabricHandlers {
  message(msg: WireMessage): void;
  status(status: StreamStatus): void;
  problem(err: StreamError): void;
  backpressure?(on: boolean, queued: number): void;
}

export interface FabricStream {
  send(payload: unknown, key: Buffer | undefined, meta: Record<string, unknown> | undefined, cb: SendCallback): void;
  readonly peers: number;
  /** The libfabric provider in use, e.g. "shm" or "tcp;ofi_rxm". */
  readonly providerName: string;
  stats(): StreamStats;
  close(lingerMs: number): Promise<number>;
  /**
   * With `links`: a frame set to one peer by its key; the output side sends it over the fabric (in
   * order with the rest to that receiver), the input side over the side channel. Resolves once
   * handed over; rejects when that peer is gone.
   */
  sendLink?(key: string, frames: Buffer[]): Promise<void>;
}

export const DEFAULT_CHUNK_BYTES = 1024 * 1024 + 64 * 1024;
const DEFAULT_SEND_BUFFERS = 16;
const DEFAULT_CREDITS = 16;
/** Completion-queue reads per progress step (16 completions each) before yielding. */
const POLLS_PER_STEP = 8;
/** A sender pausing this long sends a wake-up with its next chunk (the receiver may be backing off). */
const WAKE_AFTER_MS = 2;
/** A receiver that had a chunk this recently polls at least every millisecond. */
const RECENT_MS = 200;
/** Frames at least this large go to the fabric uncopied (fi_sendv) where the provider allows. */
const ZERO_COPY_MIN = 16 * 1024;
/** Head buffers of zero-copy chunks: chunk header, preamble and the small frames before the large ones. */
const HEAD_BYTES = 4096;
/** shm: how long sends to a receiver that went away may stay uncompleted before the endpoint is renewed. */
const STUCK_MS = 100;
/**
 * Over tcp both ends keep turning this long after their last completion while chunks are in
 * flight. A 1 MiB chunk needs many polls on both sides (rxm's rendezvous: the receiver reads,
 * the sender's progress serves the read), and completions come only at its end: with a 10 ms
 * window, one scheduling gap on a loaded 2-core machine dropped a side to 1 ms timers, a chunk
 * then took ~8 ms of timer ticks, longer than the window, and the stream stayed at ~130 MB/s
 * (the "23.6 s" bench runs of 3,000 × 1 MiB).
 */
const TCP_SPIN_MS = 50;
/** Receive completions read at a time: chunks are up to 1 MiB, so a step stops near RECEIVE_YIELD_BYTES. */
const RECEIVES_PER_POLL = 2;
/** Most receive buffers one input side keeps posted. */
const MAX_POSTED = 1024;

// Every endpoint still open when the process exits is closed: the shm provider leaves its
// shared-memory files behind otherwise. (Node-RED's own stop closes them earlier, via close().)
const openEndpoints = new Set<Endpoint>();
let exitHook = false;
function track(ep: Endpoint): void {
  openEndpoints.add(ep);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const e of openEndpoints) {
        try {
          e.close();
        } catch {
          // exiting anyway
        }
      }
    });
  }
}
/**
 * Closes an endpoint. One whose provider keeps its domain busy (sends stuck with a receiver that
 * was killed; see Endpoint.close) is closed as far as it can be and kept: that is reported to
 * `problem`, naming the node (`who`), not thrown, since nothing more can be done about it.
 */
function untrack(ep: Endpoint, who: string, problem: (e: StreamError) => void): void {
  openEndpoints.delete(ep);
  try {
    ep.close();
  } catch (e) {
    if (!(e instanceof FabricError) || e.fn !== 'fi_close(domain)') throw e;
    problem(new StreamError('EFABRIC', `${who} closed: ${e.message}`));
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

function fabricProblem(what: string, e: unknown): StreamError {
  return new StreamError('EFABRIC', `${what}: ${errorText(e)}`);
}

// ---------------------------------------------------------------------------------------------
// Output side

interface OutPeer {
  serial: number;
  name: string;
  channel: Channel;
  /** The id the receiver asked us to stamp on our chunks. */
  id: number;
  fiAddr: bigint;
  chunk: number;
  credits: number;
  seq: number;
  ready: boolean;
  alive: boolean;
  lastChunkAt: number;
  inFlight: number;
  /** The receiver said it is backing off: wake it with the next chunk. */
  receiverIdle: boolean;
  /** Of inFlight, the chunks copied into one of the send buffers (the rest went uncopied, fi_sendv). */
  copies: number;
}

interface Job {
  cursor: MessageCursor;
  peer?: OutPeer;
  /** For this peer only (sendLink): never given to another when it goes away. */
  addressed?: boolean;
  /** A chunk filled and not yet accepted by the provider (it answered -FI_EAGAIN). With
   *  `parts`, `b` is a small head buffer (chunk header, preamble, small frames) and the parts,
   *  views of the caller's frames, follow it uncopied (fi_sendv). */
  staged?: { b: NativeBuffer; len: number; parts?: Buffer[] };
  resolve(): void;
  reject(e: StreamError): void;
}

/** The fabric address of an rdma out: on the address its side channel listens on, unless that is every address. */
function outSourceHost(host: string): string | undefined {
  return host === '0.0.0.0' || host === '::' || host === '*' || host === '' ? undefined : host;
}

/** An efa in whose senders are all on this machine's loopback uses loopback too; elsewhere the provider's choice. */
function inSourceHost(targets: ReadonlyArray<{ host: string }>): string | undefined {
  return targets.length > 0 && targets.every((t) => /^127\./.test(t.host) || t.host === 'localhost') ? '127.0.0.1' : undefined;
}

/** The output side: listens on host:port for receivers, sends round-robin over them. Throws FabricError when the provider cannot be opened. */
export function openFabricOut(cfg: FabricOutConfig, handlers: FabricHandlers): FabricStream {
  const chunkBytes = cfg.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const nBuffers = cfg.sendBuffers ?? DEFAULT_SEND_BUFFERS;
  // Operation slots beyond the buffers: sends stuck with a receiver that went away keep theirs.
  const depth = nBuffers * 8;
  const open = cfg.openEndpoint ?? openEndpoint;
  // `let`: over shm a receiver dying mid-transfer poisons the endpoint, which is then replaced (see renewEndpoint).
  let ep = open(cfg.provider, { depth, sourceHost: outSourceHost(cfg.host) });
  track(ep);
  const where = `${cfg.host}:${cfg.port}`;
  const idle: NativeBuffer[] = [];
  try {
    idle.push(...sendBuffers(ep));
  } catch (e) {
    // Nothing else is open yet: the endpoint is all there is to close.
    untrack(ep, `rdma out on ${where}`, handlers.problem);
    throw e;
  }
  // Zero-copy sends (fi_sendv of a head buffer and the frames themselves) where the provider
  // needs no registration; SPAWN_FABRIC_COPY=1 turns them off (every chunk copied, as before).
  // Read once: a renewed endpoint has the same provider, so the same registration needs.
  const zeroCopy = !ep.mrLocal && ep.iovLimit >= 2 && process.env.SPAWN_FABRIC_COPY !== '1';
  const heads: NativeBuffer[] = [];
  const isHead = new WeakSet<NativeBuffer>();
  const takeHead = (): NativeBuffer => {
    const h = heads.pop();
    if (h) return h;
    const b = ep.allocBuffer(HEAD_BYTES);
    isHead.add(b);
    return b;
  };
  /** A send buffer or head buffer back to its pool. */
  const giveBack = (b: NativeBuffer) => (isHead.has(b) ? heads.push(b) : idle.push(b));

  /** How the next chunk of `job` can go uncopied: its head (header, small leading frames) and large parts; null when it cannot. */
  function zeroCopyPlan(job: Job, room: number): { smalls: Buffer[]; parts: Buffer[]; bytes: number } | null {
    const slices = job.cursor.slices(room);
    let i = 0;
    let headBytes = CHUNK_HEADER;
    while (i < slices.length && slices[i].length < ZERO_COPY_MIN) headBytes += slices[i++].length;
    if (i === slices.length || headBytes > HEAD_BYTES || slices.length - i + 1 > ep.iovLimit) return null;
    const parts = slices.slice(i);
    // Small frames after a large one would need an entry each: copy such a chunk instead.
    if (parts.some((x) => x.length < ZERO_COPY_MIN)) return null;
    let bytes = headBytes - CHUNK_HEADER;
    for (const x of parts) bytes += x.length;
    return { smalls: slices.slice(0, i), parts, bytes };
  }
  const peers = new Map<number, OutPeer>();
  let ring: OutPeer[] = [];
  let rr = 0;
  let serials = 0;
  const jobs: Job[] = [];
  let inFlight = 0;
  let pumping = false;
  let closed = false;
  let listening = false;
  let lastError: string | undefined;

  /**
   * The send buffers of a new endpoint. Where the provider needs them registered (fi_mr_reg, efa)
   * that can fail: those made so far are released with the endpoint, and the error names the node.
   */
  function sendBuffers(on: Endpoint): NativeBuffer[] {
    const made: NativeBuffer[] = [];
    try {
      for (let i = 0; i < nBuffers; i++) made.push(on.allocBuffer(chunkBytes));
    } catch (e) {
      throw fabricProblem(`rdma out on ${where}: cannot register its send buffers with provider ${on.providerName}`, e);
    }
    return made;
  }
  /**
   * Send buffers that could not be replaced when a receiver went away holding some (registration
   * failed): the late completions of that receiver's sends give theirs back instead of releasing them.
   */
  let missing = 0;

  const readyCount = () => ring.length;
  const report = () => {
    if (closed) return;
    const n = readyCount();
    let status: StreamStatus;
    if (lastError) status = { state: 'error', peers: n, text: lastError };
    else if (!listening) status = { state: 'connecting', peers: n, text: `${ep.providerName}: binding ${where}` };
    else if (n === 0) status = { state: 'connecting', peers: n, text: `${ep.providerName}: waiting for receivers on ${where}` };
    else status = { state: 'ready', peers: n, text: `${ep.providerName}: ${plural(n, 'peer')}` };
    handlers.status(status);
  };

  function pick(): OutPeer | undefined {
    for (let i = 0; i < ring.length; i++) {
      const p = ring[(rr + i) % ring.length];
      if (p.credits > 0) {
        rr = (rr + i + 1) % ring.length;
        return p;
      }
    }
    return undefined;
  }

  /** Posts as many chunks as credits, buffers and the provider allow; returns how many. */
  function pump(): number {
    if (pumping || closed) return 0;
    pumping = true;
    let posted = 0;
    try {
      while (jobs.length > 0) {
        const job = jobs[0];
        if (job.peer && !job.peer.alive) {
          if (job.cursor.untouched && !job.staged && !job.addressed) job.peer = undefined;
          else {
            jobs.shift();
            if (job.staged) giveBack(job.staged.b);
            job.reject(new StreamError('EPEERGONE', `receiver ${job.peer.name} went away in the middle of this message (${where}); message lost`));
            continue;
          }
        }
        if (!job.peer) job.peer = pick();
        const p = job.peer;
        if (!p) break;
        let blocked = false;
        for (;;) {
          if (!job.staged) {
            if (job.cursor.done || p.credits <= 0) break;
            const plan = zeroCopy ? zeroCopyPlan(job, p.chunk - CHUNK_HEADER) : null;
            if (plan) {
              const h = takeHead();
              writeChunkHeader(h.buf, p.id, p.seq);
              let at = CHUNK_HEADER;
              for (const x of plan.smalls) at += x.copy(h.buf, at);
              job.cursor.skip(plan.bytes);
              job.staged = { b: h, len: at, parts: plan.parts };
            } else {
              if (idle.length === 0) break;
              const b = idle.pop()!;
              const n = job.cursor.fill(b.buf, CHUNK_HEADER, p.chunk - CHUNK_HEADER);
              writeChunkHeader(b.buf, p.id, p.seq);
              job.staged = { b, len: CHUNK_HEADER + n };
            }
          }
          const st = job.staged;
          if (!(st.parts ? ep.postSendv(p.fiAddr, st.b, st.len, st.parts, p.serial) : ep.postSend(p.fiAddr, st.b, st.len, p.serial))) {
            blocked = true; // -FI_EAGAIN: progress first, then this same chunk again
            break;
          }
          job.staged = undefined;
          p.seq = (p.seq + 1) >>> 0;
          p.credits--;
          p.inFlight++;
          if (!st.parts) p.copies++;
          inFlight++;
          posted++;
          const now = Date.now();
          if (p.receiverIdle || now - p.lastChunkAt >= WAKE_AFTER_MS) {
            p.channel.send({ t: 'wake' });
            p.receiverIdle = false;
          }
          p.lastChunkAt = now;
        }
        if (job.cursor.done && !job.staged) {
          jobs.shift();
          job.resolve();
          continue;
        }
        if (blocked || job.staged) break;
        // Out of credits on this peer mid-message: wait for its credits (the message stays with it).
        break;
      }
    } catch (e) {
      // A post that fails outright (not EAGAIN): fail the message, keep the stream.
      const job = jobs.shift();
      if (job?.staged) giveBack(job.staged.b);
      job?.reject(fabricProblem(`send to ${job?.peer?.name ?? 'a receiver'} failed`, e));
    } finally {
      pumping = false;
    }
    return posted;
  }

  function sendDone(c: { tag: number; buffer: unknown }): void {
    const b = c.buffer as NativeBuffer;
    const p = peers.get(c.tag);
    if (p && !p.alive) {
      // A late completion for a receiver that went away: a send buffer was replaced when it went
      // (unless that failed: then this one goes back to the pool in its place).
      if (isHead.has(b)) heads.push(b);
      else if (missing > 0) {
        missing--;
        idle.push(b);
      } else ep.releaseBuffer(b);
      if (--p.inFlight <= 0) peers.delete(p.serial);
      return;
    }
    giveBack(b);
    inFlight--;
    if (p) {
      p.inFlight--;
      if (!isHead.has(b)) p.copies--;
    }
  }

  function step(): number {
    let work = 0;
    if (stuckSince && Date.now() - stuckSince >= STUCK_MS) work += renewEndpoint();
    for (let i = 0; i < POLLS_PER_STEP && !closed; i++) {
      let done: Completion[];
      try {
        done = ep.poll();
      } catch (e) {
        work++;
        const op = (e as FabricError).op;
        if (op) {
          sendDone(op);
          const p = peers.get(op.tag);
          if (p?.alive) handlers.problem(fabricProblem(`a chunk to receiver ${p.name} failed; its message is lost`, e));
        } else handlers.problem(fabricProblem('completion queue', e));
        continue;
      }
      if (done.length === 0) break;
      for (const c of done) if (c.kind === 'send') sendDone(c);
      work += done.length;
    }
    return work + pump();
  }

  // While chunks are in flight the sender keeps turning (shm without cross-memory attach, and
  // tcp, move bytes only while the sender polls too); idle, it backs off.
  const progress = new Progress(step, () => inFlight > 0 || jobs.length > 0, 50, 1, undefined, true, ep.providerName.includes('tcp') ? TCP_SPIN_MS : undefined);

  /** New send buffers in place of `n` held by a receiver that went away. Runs in a side-channel callback: a failure is reported, never thrown. */
  function replaceBuffers(n: number): void {
    try {
      for (; n > 0; n--) idle.push(ep.allocBuffer(chunkBytes));
    } catch (e) {
      missing += n;
      const why = `cannot register send buffers with provider ${ep.providerName} (${errorText(e)})`;
      handlers.problem(new StreamError('EFABRIC', `rdma out on ${where}: ${why} in place of the ${plural(n, 'buffer')} a receiver that went away still holds; going on with fewer until they come back`));
    }
  }

  function dropPeer(p: OutPeer, why?: string): void {
    if (!p.alive) return;
    p.alive = false;
    const wasReady = p.ready;
    p.ready = false;
    ring = ring.filter((x) => x !== p);
    rr = ring.length ? rr % ring.length : 0;
    // Chunks in flight to it may never complete (shm: nobody will read them) and their buffers
    // stay the provider's: new buffers take their place, so the other receivers are not starved.
    // Completions that do come back later are recognised by serial and their buffers released.
    if (p.inFlight === 0) peers.delete(p.serial);
    else if (!closed) {
      replaceBuffers(p.copies);
      inFlight -= p.inFlight;
      if (shm && !stuckSince) stuckSince = Date.now();
    }
    if (wasReady && why && !closed) {
      const lost = p.inFlight > 0 ? `; up to ${plural(p.inFlight, 'chunk')} in flight to it may be lost` : '';
      handlers.problem(new StreamError('EPEERGONE', `receiver ${p.name} on ${where} is gone (${why})${lost}`));
    }
    report();
    progress.kick();
  }

  // libfabric 1.17's shm provider completes sends in the order posted, through one response
  // queue per endpoint (smr_progress_resp stops at the first entry still marked busy). A
  // receiver killed before it processed our commands never marks its entries, so every later
  // send of this endpoint, to any receiver, stays uncompleted: the sender stalls with its
  // buffers in flight. fi_av_remove does not clear those entries and fi_cancel covers receives
  // only. So when a receiver has gone with sends in flight and they are still uncompleted
  // STUCK_MS later, the endpoint is replaced by a fresh one: the live receivers are told "bye"
  // and reconnect (to the new fabric address), as after any restart of the sender; what was
  // half-sent to them fails with EPEERGONE (at most once, as for a crash).
  const shm = ep.providerName === 'shm';
  let stuckSince = 0;

  function renewEndpoint(): number {
    stuckSince = 0;
    const stuck = [...peers.values()].some((p) => !p.alive && p.inFlight > 0);
    if (!stuck || closed) return 0;
    let fresh: Endpoint;
    let buffers: NativeBuffer[];
    try {
      fresh = open(cfg.provider, { depth, sourceHost: outSourceHost(cfg.host) });
    } catch (e) {
      handlers.problem(fabricProblem(`rdma out on ${where}: a receiver went away mid-transfer and the shm endpoint could not be renewed`, e));
      return 0;
    }
    try {
      buffers = sendBuffers(fresh);
    } catch (e) {
      fresh.close();
      handlers.problem(e as StreamError);
      return 0;
    }
    const live = [...peers.values()].filter((p) => p.alive);
    for (const p of live) {
      p.alive = false;
      p.ready = false;
      p.channel.finish({ t: 'bye' });
    }
    ring = [];
    rr = 0;
    peers.clear();
    const old = ep;
    ep = fresh;
    track(ep);
    untrack(old, `rdma out on ${where}: the endpoint it replaced`, handlers.problem);
    idle.length = 0;
    idle.push(...buffers);
    missing = 0;
    heads.length = 0;
    inFlight = 0;
    // Jobs not started yet go to the receivers that reconnect; a started one fails in pump().
    for (const job of jobs) job.staged = undefined;
    report();
    return 1;
  }

  function onHello(p: OutPeer, m: Extract<ChannelMessage, { t: 'hello' }>): void {
    if (m.v !== CHANNEL_VERSION) {
      p.channel.finish({ t: 'error', message: `rdma out on ${where} speaks side-channel version ${CHANNEL_VERSION}, this receiver ${m.v}` });
      return;
    }
    if (m.provider !== ep.providerName) {
      const message = `provider mismatch: rdma out on ${where} uses ${ep.providerName}, the receiver at ${p.name} uses ${m.provider}; choose the same provider on both ends`;
      p.channel.finish({ t: 'error', message });
      handlers.problem(new StreamError('EFABRIC', message));
      return;
    }
    const mine = cfg.links ? 'exactly-once' : 'at-most-once';
    if ((m.delivery || 'at-most-once') !== mine) {
      const message = `delivery mismatch: rdma out on ${where} is ${mine}, the receiver at ${p.name} is ${m.delivery || 'at-most-once'}; choose the same delivery on both ends`;
      p.channel.finish({ t: 'error', message });
      handlers.problem(new StreamError('EFABRIC', message));
      return;
    }
    try {
      p.fiAddr = ep.insertPeer(Buffer.from(m.address, 'base64'));
    } catch (e) {
      p.channel.finish({ t: 'error', message: `rdma out on ${where} cannot reach your fabric address: ${errorText(e)}` });
      handlers.problem(fabricProblem(`receiver ${p.name}: its fabric address is not usable`, e));
      return;
    }
    p.id = m.id >>> 0;
    p.chunk = Math.max(CHUNK_HEADER + 64, Math.min(chunkBytes, m.chunk | 0));
    p.credits = Math.max(0, m.credits | 0);
    p.ready = true;
    ring.push(p);
    p.channel.send({ t: 'welcome', v: CHANNEL_VERSION, address: ep.address.toString('base64'), provider: ep.providerName });
    report();
    progress.kick();
  }

  const server = net.createServer((socket) => {
    if (closed) return socket.destroy();
    const serial = ++serials;
    const p: OutPeer = {
      serial,
      name: `${socket.remoteAddress}:${socket.remotePort}`,
      channel: undefined as unknown as Channel,
      id: 0,
      fiAddr: 0n,
      chunk: chunkBytes,
      credits: 0,
      seq: 0,
      ready: false,
      alive: true,
      lastChunkAt: 0,
      inFlight: 0,
      receiverIdle: false,
      copies: 0,
    };
    let said: string | undefined;
    peers.set(serial, p);
    p.channel = new Channel(socket, {
      message: (m) => {
        if (m.t === 'hello' && !p.ready) onHello(p, m);
        else if (m.t === 'credit' && p.ready) {
          p.credits += m.n | 0;
          progress.kick();
        } else if (m.t === 'idle') p.receiverIdle = true;
        else if (m.t === 'bye') said = 'it closed';
        else if (m.t === 'error') handlers.problem(new StreamError('EFABRIC', `receiver ${p.name}: ${m.message}`));
        else if (m.t === 'frames' && p.ready && cfg.links) {
          const frames = framesOf(m);
          if (frames) cfg.links.control(String(p.serial), p.name, frames);
          else {
            handlers.problem(new StreamError('EPROTO', `receiver ${p.name} on ${where} sent a broken frames message; dropped`));
            p.channel.destroy();
          }
        }
      },
      garbage: (why) => handlers.problem(new StreamError('EPROTO', `a connection to rdma out on ${where} from ${p.name} is not an efa in (${why}); dropped`)),
      closed: (err) => dropPeer(p, said ? undefined : err ? `connection failed: ${err.message}` : 'connection closed without goodbye'),
    });
  });
  server.on('error', () => undefined); // listen errors are handled in listen()

  /** Listens on the side-channel port, retrying while it is taken (native/peer-watch.ts). */
  async function listen(): Promise<void> {
    const listenOnce = () =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(cfg.port, cfg.host === '*' ? undefined : cfg.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    const error = (text: string | undefined) => {
      lastError = text;
      report();
    };
    if (!(await bindEach([where], listenOnce, { closed: () => closed, error, problem: (e) => handlers.problem(e) }))) return;
    listening = true;
    report();
  }

  const links = cfg.links;
  const sender = new Sender(
    {
      format: cfg.format,
      batch: cfg.batch && cfg.format === 'spawn',
      // Credits count chunks, so a chunk should carry as much as it can: small and medium
      // messages are batched up to a chunk (one more copy, far cheaper than a round trip per
      // message); only those of half a chunk or more travel alone, uncopied until the chunk.
      // (Exactly-once: less the link layer's delivery header.)
      batchBytes: chunkBytes - CHUNK_HEADER - 8 - (cfg.links?.overheadBytes ?? 0),
      detachBytes: Math.max(DETACH_BYTES, Math.floor(chunkBytes / 2)),
      maxMessageSize: cfg.maxMessageSize,
      highWater: cfg.highWater,
      queueLimit: cfg.queueLimit,
      envelope: false,
    },
    links
      ? (frames) => links.transmit(frames)
      : (frames) =>
          new Promise<void>((resolve, reject) => {
            if (closed) return reject(new StreamError('ECLOSED', `rdma out on ${where} is closed`));
            jobs.push({ cursor: new MessageCursor(frames), resolve, reject });
            // Straight away when possible: a resolved send lets the sender hand over the next
            // message in the same turn, so a burst goes out without waiting for progress turns.
            pump();
            progress.kick();
          }),
    { backpressure: (on, queued) => handlers.backpressure?.(on, queued) },
  );

  // ENOPEER: messages wait and no receiver came (once per outage, as the ZeroMQ and QUIC streams).
  const stopWatch = watchForNoPeer({
    ms: cfg.noPeerMs,
    where,
    connected: () => (links ? links.peers : ring.length) > 0,
    quiet: () => closed || !listening,
    waiting: () => sender.pending + (links?.inFlight ?? 0) > 0,
    pending: () => sender.pending + (links?.inFlight ?? 0),
    problem: (e) => handlers.problem(e),
  });

  report();
  const started = listen();

  return {
    send: (payload, key, meta, cb) => sender.send(payload, key, meta, cb),
    get peers() {
      return ring.length;
    },
    providerName: ep.providerName,
    stats: () => ({ sentMessages: sender.sentMessages, sentBytes: sender.sentBytes, receivedMessages: 0, receivedBytes: 0, queued: sender.pending + (links?.inFlight ?? 0) }),
    sendLink: (key, frames) =>
      new Promise<void>((resolve, reject) => {
        const p = peers.get(Number(key));
        if (closed || !p || !p.alive || !p.ready) return reject(new StreamError('EPEERGONE', `receiver ${p?.name ?? key} is not connected to ${where}`));
        jobs.push({ cursor: new MessageCursor(frames), peer: p, addressed: true, resolve, reject });
        pump();
        progress.kick();
      }),
    async close(lingerMs) {
      const deadline = Date.now() + lingerMs;
      const drained = await sender.drain(lingerMs);
      const unsent = `the node closed before this message could be sent to a receiver on ${where}`;
      // The frame set the Sender is transmitting (at most one job) is counted in its pending messages.
      let undelivered = drained ? 0 : sender.pending;
      let until = deadline;
      if (links) {
        // Exactly-once: acknowledgements get the linger time. The queue is counted (and failed)
        // before the link layer stops, whose stop fails the frame set waiting for room in its
        // window; then what it holds unacknowledged. The fabric then holds heartbeats at most.
        if (drained) await links.settle(Math.max(0, deadline - Date.now()));
        undelivered = (drained ? 0 : sender.close(unsent)) + links.close();
        until = Math.min(deadline, Date.now() + 200);
      }
      // What the fabric holds gets the rest of the linger time to complete.
      while ((jobs.length > 0 || inFlight > 0) && ring.length > 0 && Date.now() < until) {
        progress.kick();
        await sleep(2);
      }
      closed = true;
      stopWatch();
      progress.stop();
      if (!drained && !links) sender.close(unsent);
      for (const job of jobs.splice(0)) job.reject(new StreamError('ECLOSED', unsent));
      for (const p of peers.values()) {
        p.alive = false;
        p.channel.finish({ t: 'bye' });
      }
      await started;
      await new Promise<void>((r) => server.close(() => r()));
      untrack(ep, `rdma out on ${where}`, handlers.problem); // closes the endpoint first, then the buffers' registrations
      return undelivered;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Input side

interface InSender {
  id: number;
  name: string;
  channel: Channel;
  reassembler: Reassembler;
  expectSeq: number;
  /** Credits granted and chunks received: the difference is this sender's share of the posted buffers. */
  granted: number;
  received: number;
  /** Buffers posted again since the last credit message. */
  owed: number;
  ready: boolean;
  bye: boolean;
  /** Chunks that completed ahead of their turn, by sequence number, buffers not yet re-posted. */
  held: Map<number, Completion>;
}

/** The input side: connects to each sender's side channel and receives. Throws FabricError when the provider cannot be opened. */
export function openFabricIn(cfg: FabricInConfig, handlers: FabricHandlers): FabricStream {
  const chunkBytes = cfg.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const credits = cfg.credits ?? DEFAULT_CREDITS;
  const ep = (cfg.openEndpoint ?? openEndpoint)(cfg.provider, { depth: MAX_POSTED, sourceHost: inSourceHost(cfg.connect) });
  track(ep);
  const targets = cfg.connect.map((t) => `${t.host}:${t.port}`);
  const where = targets.join(', ');
  const all = new Set<NativeBuffer>();
  /** Buffers posted but promised to no live sender (left by senders that went away). */
  let spare = 0;
  /** Buffers whose re-post the provider deferred (-FI_EAGAIN), with the sender to credit. */
  const toPost: Array<{ b: NativeBuffer; sender: number }> = [];
  const senders = new Map<number, InSender>();
  let nextId = 1;
  let closed = false;
  let receivedMessages = 0;
  let receivedBytes = 0;
  const sockets = new Set<net.Socket>();
  // Raw framing does not apply here (the fabric carries whole messages): spawn or raw payloads.
  const decodeOpts = { format: cfg.format, envelope: 0 as const, optionalEnvelope: false, maxMessageSize: cfg.maxMessageSize };
  // A transport message is at most a batch of a chunk's size, or one payload with its headers:
  // refuse (and skip, never buffer) only what is over both; the decoder then judges each payload.
  const maxBytes = cfg.maxMessageSize > 0 ? cfg.maxMessageSize + chunkBytes + 4096 : 0;

  const readyCount = () => [...senders.values()].filter((s) => s.ready).length;
  const report = () => {
    if (closed) return;
    const n = readyCount();
    handlers.status(
      n === 0
        ? { state: 'connecting', peers: 0, text: `${ep.providerName}: connecting to ${where}` }
        : { state: 'ready', peers: n, text: `${ep.providerName}: ${plural(n, 'peer')}` },
    );
  };

  function post(b: NativeBuffer, sender: number): boolean {
    if (closed) return false;
    if (ep.postRecv(b, 0)) return true;
    toPost.push({ b, sender });
    return false;
  }

  /** A buffer is posted again: its credit goes back to the sender whose chunk it held. (One
   *  from a sender already gone was counted as spare when that sender went.) */
  function credit(senderId: number): void {
    const s = senders.get(senderId);
    if (s) s.owed++;
  }

  /**
   * Posts `n` buffers for a new sender: spare ones first, then new ones. Where the provider needs
   * buffers registered (fi_mr_reg, efa) that can fail: `failed` says why, `given` what was posted.
   */
  function provide(n: number): { given: number; failed?: unknown } {
    const fromSpare = Math.min(spare, n);
    spare -= fromSpare;
    let given = fromSpare;
    while (given < n && all.size < MAX_POSTED) {
      let b: NativeBuffer;
      try {
        b = ep.allocBuffer(chunkBytes);
      } catch (e) {
        return { given, failed: e };
      }
      all.add(b);
      if (!post(b, -1)) {
        toPost.pop();
        all.delete(b);
        ep.releaseBuffer(b);
        break;
      }
      given++;
    }
    return { given };
  }

  function deliver(s: InSender, frames: Buffer[]): void {
    if (cfg.links) return cfg.links.frames(s.name, frames);
    let got;
    try {
      got = decodeReceived(frames, decodeOpts);
    } catch (e) {
      handlers.problem(new StreamError('EBADFRAME', `dropped a malformed message from rdma out at ${s.name}: ${errorText(e)}`));
      return;
    }
    receivedBytes += got.bytes;
    receivedMessages += got.messages.length;
    for (const m of got.messages) {
      if (m.refused) handlers.problem(new StreamError('EMSGSIZE', `refused a message from rdma out at ${s.name}: ${m.refused}`));
      else handlers.message(m);
    }
  }

  function onChunk(c: Completion): void {
    lastChunkAt = Date.now();
    const buf = c.buffer.buf;
    const s = c.len >= CHUNK_HEADER ? senders.get(buf.readUInt32LE(0)) : undefined;
    // Chunks from a sender already gone are dropped (at most once): the buffer is posted again.
    if (!s) {
      post(c.buffer, -1);
      return;
    }
    s.received++;
    const seq = buf.readUInt32LE(4);
    if (seq !== s.expectSeq) {
      // Providers may complete receives out of order (tcp's rendezvous for large messages):
      // hold the chunk, in its buffer, until the ones before it are in. Credits bound how many.
      if (((seq - s.expectSeq) >>> 0) > MAX_POSTED || s.held.has(seq)) {
        handlers.problem(new StreamError('EBADFRAME', `chunk ${seq} from rdma out at ${s.name} where ${s.expectSeq} was expected: the stream is broken; reconnecting`));
        s.channel.destroy();
        post(c.buffer, -1);
        return;
      }
      s.held.set(seq, c);
      return;
    }
    let next: Completion | undefined = c;
    while (next && !closed) {
      consume(s, next);
      s.expectSeq = (s.expectSeq + 1) >>> 0;
      next = s.held.get(s.expectSeq);
      if (next) s.held.delete(s.expectSeq);
    }
  }

  /** A chunk in sequence: into its message, then its buffer is posted again and credited. */
  function consume(s: InSender, c: Completion): void {
    const data = c.buffer.buf.subarray(CHUNK_HEADER, c.len);
    // Copied out, and the buffer posted again. Handing a whole-message chunk out as it is (and
    // posting a new buffer) saved the copy, but the new buffers waited posted, 16 chunks ahead,
    // through young-generation collections, were promoted, and made the runtime run a full
    // collection every ~48 MB; copies die young (native/gc-pacer.ts). See BENCHMARKS.md, RDMA.
    const r = s.reassembler.push(data);
    if (r) {
      if ('frames' in r) deliver(s, r.frames);
      else if ('refused' in r) {
        handlers.problem(new StreamError('EMSGSIZE', `refused a message of ${r.refused} bytes from rdma out at ${s.name}: over the maximum message size of ${cfg.maxMessageSize} bytes`));
      } else {
        handlers.problem(new StreamError('EBADFRAME', `rdma out at ${s.name} sent a broken message (${r.bad}); reconnecting`));
        s.channel.destroy();
      }
    }
    if (post(c.buffer, s.id)) credit(s.id);
  }

  // With a link layer that holds too much not yet done, nothing is read: credits stop going back
  // and the senders wait (backpressure), until it says it can take more.
  let waitingToRead = false;
  function unreadable(): boolean {
    const links = cfg.links;
    if (!links || links.readable()) return false;
    if (!waitingToRead) {
      waitingToRead = true;
      void links.whenReadable().then(() => {
        waitingToRead = false;
        progress.kick();
      });
    }
    return true;
  }

  function step(): number {
    let work = 0;
    if (unreadable()) return 0;
    for (let i = toPost.length; i > 0 && toPost.length > 0; i--) {
      const { b, sender } = toPost[0];
      if (!ep.postRecv(b, 0)) break;
      toPost.shift();
      credit(sender);
      work++;
    }
    // Bounded by bytes too: what a step hands on waits in Node-RED's queue until the step yields,
    // and payloads that wait through young-generation collections are promoted (gc-pacer.ts).
    let stepBytes = 0;
    for (let i = 0; i < POLLS_PER_STEP && !closed && stepBytes < RECEIVE_YIELD_BYTES; i++) {
      let done: Completion[];
      try {
        done = ep.poll(RECEIVES_PER_POLL);
      } catch (e) {
        work++;
        const op = (e as FabricError).op;
        if (op && op.kind === 'recv' && !closed) post(op.buffer as NativeBuffer, -1);
        handlers.problem(fabricProblem('a receive failed', e));
        continue;
      }
      if (done.length === 0) break;
      for (const c of done) {
        // A message handler may close this stream (and its endpoint) while we are here.
        if (closed) return work;
        if (c.kind === 'recv') {
          stepBytes += c.len;
          onChunk(c);
        }
      }
      work += done.length;
    }
    if (closed) return work;
    // Credits go back in batches (a TCP write each): a quarter of the window at a time, or at
    // once when the sender may be running short (what it holds plus what is in flight is low).
    for (const s of senders.values()) {
      if (s.owed > 0 && (s.owed >= credits / 4 || s.granted - s.received < credits / 2)) {
        s.channel.send({ t: 'credit', n: s.owed });
        s.granted += s.owed;
        s.owed = 0;
      }
    }
    return work;
  }

  // Between chunks the receiver does not spin (that would take the CPU its sender needs, on a
  // small machine): after a few empty turns it tells its senders it is idle and backs off; the
  // next chunk comes with a wake-up over the side channel, which ends the back-off. Recently
  // active (a chunk in the last RECENT_MS): back off to 1 ms at most. Over tcp, bytes move only
  // while both ends poll, so there the receiver keeps turning while chunks are recent.
  let lastChunkAt = 0;
  const spinWhileRecent = ep.providerName.includes('tcp');
  const progress = new Progress(
    step,
    () => Date.now() - lastChunkAt < RECENT_MS,
    100,
    1,
    () => {
      for (const s of senders.values()) if (s.ready) s.channel.send({ t: 'idle' });
    },
    spinWhileRecent,
    spinWhileRecent ? TCP_SPIN_MS : undefined,
  );

  function connect(target: { host: string; port: number }): void {
    const name = `${target.host}:${target.port}`;
    let reported = false;
    const attempt = () => {
      if (closed) return;
      const socket = net.connect(target.port, target.host);
      sockets.add(socket);
      let s: InSender | undefined;
      let ended = false;
      const again = () => {
        sockets.delete(socket);
        if (!closed) setTimeout(attempt, cfg.reconnectMs).unref();
      };
      socket.once('connect', () => {
        const id = nextId++;
        const channel = new Channel(socket, {
          message: (m) => {
            if (!s) return;
            if (m.t === 'welcome') {
              if (m.provider !== ep.providerName) {
                handlers.problem(new StreamError('EFABRIC', `provider mismatch: rdma out at ${name} uses ${m.provider}, this efa in uses ${ep.providerName}; choose the same provider on both ends`));
                return channel.finish({ t: 'bye' });
              }
              try {
                ep.insertPeer(Buffer.from(m.address, 'base64'));
              } catch (e) {
                handlers.problem(fabricProblem(`rdma out at ${name}: its fabric address is not usable`, e));
                return channel.finish({ t: 'bye' });
              }
              s.ready = true;
              reported = false;
              report();
              progress.kick();
            } else if (m.t === 'wake') progress.kick();
            else if (m.t === 'bye') s.bye = true;
            else if (m.t === 'error' && !reported) {
              reported = true;
              handlers.problem(new StreamError('EFABRIC', `rdma out at ${name} refused this efa in: ${m.message}`));
            }
          },
          garbage: (why) => {
            if (!reported) handlers.problem(new StreamError('EPROTO', `${name} is not an rdma out (${why}); is it a ZeroMQ node? retrying`));
            reported = true;
          },
          closed: () => {
            if (ended) return;
            ended = true;
            if (s) {
              senders.delete(s.id);
              for (const h of s.held.values()) if (post(h.buffer, -1)) spare++;
              s.held.clear();
              // What it was promised and has not used stays posted, for the next sender.
              spare += s.granted + s.owed - s.received;
              if (s.ready && !s.bye && !closed) handlers.problem(new StreamError('EPEERGONE', `rdma out at ${name} is gone (connection closed without goodbye); reconnecting`));
              report();
            }
            again();
          },
        });
        s = { id, name, channel, reassembler: new Reassembler(maxBytes), expectSeq: 0, granted: 0, received: 0, owed: 0, ready: false, bye: false, held: new Map() };
        senders.set(id, s);
        const { given, failed } = provide(credits);
        s.granted = given;
        if (failed !== undefined) {
          // Reported, not thrown (this is a socket callback); once until a sender welcomes us again.
          if (!reported) {
            const then = given === 0 ? 'closing the connection; retrying' : `going on with ${plural(given, 'credit')} instead of ${credits}`;
            handlers.problem(new StreamError('EFABRIC', `efa in connecting to rdma out at ${name}: cannot register receive buffers with provider ${ep.providerName} (${errorText(failed)}); ${then}`));
          }
          reported = true;
          // With no credit to give, that sender could never send: close, and connect again later.
          if (given === 0) return channel.destroy();
        }
        channel.send({
          t: 'hello',
          v: CHANNEL_VERSION,
          address: ep.address.toString('base64'),
          provider: ep.providerName,
          id,
          chunk: chunkBytes,
          credits: given,
          ...(cfg.links ? { delivery: 'exactly-once' } : {}),
        });
        progress.kick();
      });
      socket.once('error', () => {
        // A refused connection before the channel exists: the sender is not up (yet). Quietly retry.
        if (s) return;
        ended = true;
        socket.destroy();
        again();
      });
    };
    attempt();
  }

  report();
  for (const t of cfg.connect) connect(t);
  progress.kick();

  return {
    send: (_p, _k, _m, cb) => cb(new StreamError('ESEND', 'efa in only receives')),
    get peers() {
      return readyCount();
    },
    providerName: ep.providerName,
    stats: () => ({ sentMessages: 0, sentBytes: 0, receivedMessages, receivedBytes, queued: 0 }),
    sendLink: async (key, frames) => {
      const s = [...senders.values()].find((x) => x.name === key && x.ready);
      if (closed || !s || !s.channel.open) throw new StreamError('EPEERGONE', `rdma out at ${key} is not connected`);
      s.channel.send(framesMessage(frames));
    },
    async close() {
      closed = true;
      progress.stop();
      for (const s of senders.values()) s.channel.finish({ t: 'bye' });
      for (const sock of sockets) if (![...senders.values()].some((s) => s.channel.socket === sock)) sock.destroy();
      untrack(ep, `efa in from ${where}`, handlers.problem); // closes the endpoint first, then the buffers' registrations
      return 0;
    },
  };
}
