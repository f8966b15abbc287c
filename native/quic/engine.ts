import * as crypto from 'crypto';
import * as dgram from 'dgram';
import * as net from 'net';
import { HostPort, quiche, QuicheConfig, QuicheConnection } from './binding';
import { PEER_NAME, TlsIdentity } from './pki';

/**
 * A lean QUIC engine over quiche: one UDP socket per endpoint, every connection on it, and one
 * bidirectional stream (id 0) per connection carrying bytes both ways.
 *
 * Why it is fast where @matrixai/quic's public classes are not: no promise, lock, timer or event
 * object per packet. Datagrams that arrive in one turn of the event loop are fed to quiche as they
 * come (Node's poll phase reads them back to back); the work they cause (reading streams, writing
 * queued bytes, sending packets) runs once per turn for each connection touched, in a setImmediate.
 * How much is sent per turn follows quiche's send quantum (congestion window and pacing); when more
 * remains, the next turn continues after incoming ACKs had their chance. One timer per connection
 * follows quiche's timeout(). Packets are cut from large slabs, not allocated one by one.
 *
 * Flow control is quiche's: a connection reads at most READ_BUDGET bytes per turn, so a slow
 * consumer leaves data in quiche and the peer's stream window closes; writes beyond the stream's
 * capacity wait in the connection's queue, whose size the caller watches (queuedBytes, onDrain).
 */

/** UDP payload for paths that may cross the Internet (quiche's default, fits a 1500-byte MTU). */
export const WAN_DATAGRAM = 1350;
/** UDP payload on loopback (MTU 64 KiB): fewer packets for the same bytes. */
export const LOOPBACK_DATAGRAM = 16 * 1024;
/** The one stream of a connection: the first client-initiated bidirectional stream. */
const STREAM = 0;
/** Bytes read from one connection per turn of the event loop before the others get a turn. */
const READ_BUDGET = 4 * 1024 * 1024;
/**
 * Bytes sent per connection per turn: this many send quanta. A quantum (quiche's pacing burst) is
 * ~10 datagrams; a turn of a busy Node-RED event loop takes long enough that one quantum per turn
 * would cap the rate, so a turn sends several, and quiche's congestion window stops it earlier
 * when it is full.
 */
const QUANTA_PER_TURN = 16;
/** Send at least this much per turn even when the quantum is smaller (ACKs and small packets). */
const MIN_SEND_BUDGET = 256 * 1024;
const SLAB = 1024 * 1024;
/** Connections one endpoint holds at most: a flood of Initial packets must not exhaust memory. */
const MAX_CONNECTIONS = 4096;

export interface EngineOptions {
  tls: TlsIdentity;
  /** Largest UDP payload to send; default WAN_DATAGRAM, LOOPBACK_DATAGRAM on loopback endpoints. */
  maxDatagram?: number;
  /** SO_RCVBUF / SO_SNDBUF request in bytes (the kernel caps it at net.core.[rw]mem_max). */
  socketBuffer?: number;
  /** Milliseconds of silence after which a connection is dropped (keepalives are sent at a third of it). */
  idleTimeoutMs?: number;
  /** Stream and connection flow-control windows. */
  streamWindow?: number;
  /** Allow 0-RTT early data on resumed connections. */
  earlyData?: boolean;
  /** A peer opened a connection to this endpoint (server side). */
  onAccept?(conn: QuicConn): void;
}

export interface ConnHandlers {
  /** Handshake complete (certificates verified both ways). */
  open?(): void;
  /** Bytes arrived on the stream. The buffer is the caller's to keep. */
  data?(chunk: Buffer): void;
  /** The write queue fell below the caller's mark again. */
  drain?(): void;
  /** The connection is gone; `reason` says why in words, undefined for a clean close. */
  close?(reason: string | undefined): void;
}

const TLS_ALERTS: Record<number, string> = {
  40: 'handshake_failure',
  42: 'bad_certificate',
  43: 'unsupported_certificate',
  45: 'certificate_expired',
  46: 'certificate_unknown',
  48: 'unknown_ca',
  49: 'access_denied',
  51: 'decrypt_error',
  116: 'certificate_required',
  120: 'no_application_protocol',
};

/** Words for a QUIC connection error: TLS alerts (certificate problems) get an explanation. */
export function describeConnectionError(err: { isApp: boolean; errorCode: number; reason: Uint8Array } | null, side: 'we' | 'the peer'): string | undefined {
  if (!err) return undefined;
  const reason = Buffer.from(err.reason).toString('utf8');
  if (err.isApp) return err.errorCode === 0 && !reason ? undefined : `${side} closed the connection${reason ? `: ${reason}` : ` (code ${err.errorCode})`}`;
  const q = quiche();
  if (err.errorCode >= q.CRYPTO_ERROR_START && err.errorCode <= q.CRYPTO_ERROR_STOP) {
    const alert = err.errorCode - q.CRYPTO_ERROR_START;
    const name = TLS_ALERTS[alert] ?? `alert ${alert}`;
    const certProblem = [42, 43, 45, 46, 48, 116].includes(alert);
    const who = side === 'we' ? "the peer's certificate was refused here" : 'the peer refused our certificate';
    return certProblem
      ? `TLS handshake failed: ${who} (TLS ${name}); the two sides do not trust the same CA (each pipeline has its own; check the QUIC certificate directories)`
      : `TLS handshake failed (${side === 'we' ? 'here' : 'at the peer'}): TLS ${name}`;
  }
  if (err.errorCode === 0) return undefined;
  return `QUIC transport error ${err.errorCode} (${side === 'we' ? 'here' : 'at the peer'})${reason ? `: ${reason}` : ''}`;
}

export class QuicConn {
  handlers: ConnHandlers = {};
  /** Bytes written but not yet taken by quiche. */
  queuedBytes = 0;
  /** queuedBytes at or below which drain() is called after having been above it. */
  drainMark = 1024 * 1024;
  opened = false;
  closed = false;
  /** 0-RTT data was sent (client) or received (server) on this connection. */
  sawEarlyData = false;
  private out: Buffer[] = [];
  private outHead = 0;
  private wantDrain = false;
  private timer: NodeJS.Timeout | undefined;
  private deadline = 0;
  readonly recvInfo: { from: HostPort; to: HostPort };
  /** The peer closed its side of the stream (never expected: the stream lives as long as the connection). */
  private finished = false;
  /** Not reading the stream: quiche's flow control then holds the peer back (an exactly-once receiver that is behind). */
  private paused = false;

  constructor(
    readonly endpoint: QuicEndpoint,
    readonly q: QuicheConnection,
    readonly remote: HostPort,
    readonly key: string,
    readonly isServer: boolean,
  ) {
    this.recvInfo = { from: remote, to: endpoint.local };
  }

  /** Queue bytes for the stream. They go out in order; nothing is dropped while the connection lives. */
  write(buf: Buffer): void {
    if (this.closed || buf.length === 0) return;
    this.out.push(buf);
    this.queuedBytes += buf.length;
    if (this.queuedBytes > this.drainMark) this.wantDrain = true;
    this.endpoint.touch(this);
  }

  /**
   * Send what is queued now rather than at the end of this turn of the event loop: a short message
   * that must not wait behind a long turn (an acknowledgement, which a process killed during that
   * turn would otherwise take along).
   */
  sendNow(): void {
    if (!this.closed) this.endpoint.sendNow(this);
  }

  /** Stop reading the stream until resume(); writes and the connection go on. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.endpoint.touch(this);
  }

  /** Close with an application reason; the connection lingers briefly to say so to the peer. */
  close(reason = ''): void {
    if (this.closed) return;
    try {
      this.q.close(true, 0, Buffer.from(reason));
    } catch {
      // already closing
    }
    this.endpoint.touch(this);
  }

  /** Session ticket for resuming later (client side), once the server sent one. */
  session(): Buffer | undefined {
    const s = this.q.session();
    return s ? Buffer.from(s) : undefined;
  }

  stats() {
    return this.q.stats();
  }

  get hasQueued(): boolean {
    return this.outHead < this.out.length;
  }

  /** @internal Hand queued bytes to quiche while the stream has capacity. */
  pushOut(): void {
    if (this.outHead === this.out.length) return;
    if (!this.q.isEstablished() && !this.q.isInEarlyData()) return;
    if (!this.q.isEstablished() && this.q.isInEarlyData()) this.sawEarlyData = true;
    while (this.outHead < this.out.length) {
      const buf = this.out[this.outHead];
      let n: number | null;
      try {
        n = this.q.streamSend(STREAM, buf, false);
      } catch {
        n = null; // stream blocked or stopped; retried on the next turn that touches this connection
      }
      if (!n) break;
      this.queuedBytes -= n;
      if (n < buf.length) {
        this.out[this.outHead] = buf.subarray(n);
        break;
      }
      this.out[this.outHead++] = undefined as unknown as Buffer;
    }
    if (this.outHead > 1024 && this.outHead * 2 > this.out.length) {
      this.out = this.out.slice(this.outHead);
      this.outHead = 0;
    } else if (this.outHead === this.out.length) {
      this.out.length = 0;
      this.outHead = 0;
    }
    if (this.wantDrain && this.queuedBytes <= this.drainMark) {
      this.wantDrain = false;
      this.handlers.drain?.();
    }
  }

  /** @internal Read what the stream holds, up to the per-turn budget; true when more is left. */
  pullIn(): boolean {
    let budget = READ_BUDGET;
    for (const id of this.q.readable()) {
      for (;;) {
        if (this.paused) return false;
        const slab = this.endpoint.recvSlab(65536);
        let r: [number, boolean] | null;
        try {
          r = this.q.streamRecv(id, slab.buf.subarray(slab.off));
        } catch {
          r = null;
        }
        if (!r) break;
        const [n, fin] = r;
        const chunk = slab.buf.subarray(slab.off, slab.off + n);
        slab.off += n;
        if (fin && id === STREAM) this.finished = true;
        budget -= n;
        // Other streams are not part of the protocol (the peer may open only one): read and dropped.
        if (n > 0 && id === STREAM) {
          if (!this.q.isEstablished() && this.q.isInEarlyData()) this.sawEarlyData = true;
          this.handlers.data?.(chunk);
        }
        if (budget <= 0) return true;
        if (n === 0) break;
      }
    }
    if (this.finished) this.close('stream finished');
    return false;
  }

  /** @internal Follow quiche's timer. */
  arm(now: number): void {
    const t = this.q.timeout();
    if (t === null) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      return;
    }
    const deadline = now + t;
    if (this.timer && Math.abs(deadline - this.deadline) < 1) return;
    if (this.timer) clearTimeout(this.timer);
    this.deadline = deadline;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.q.onTimeout();
      this.endpoint.touch(this);
    }, Math.max(0, t));
  }

  /** @internal */
  finish(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.out = [];
    this.outHead = 0;
    const reason =
      describeConnectionError(this.q.localError(), 'we') ??
      describeConnectionError(this.q.peerError(), 'the peer') ??
      (this.q.isTimedOut() ? (this.opened ? 'the peer went silent (idle timeout)' : 'no answer from the peer (handshake timed out)') : undefined);
    this.handlers.close?.(reason);
  }
}

export class QuicEndpoint {
  readonly socket: dgram.Socket;
  local: HostPort = { host: '0.0.0.0', port: 0 };
  /** Made at bind, once the kernel's socket buffer size is known (the windows depend on it). */
  private config!: QuicheConfig;
  private readonly loopback: boolean;
  private readonly conns = new Map<string, QuicConn>();
  private readonly dirty = new Set<QuicConn>();
  private scheduled = false;
  private listening = false;
  private closed = false;
  private sendSlab = Buffer.allocUnsafe(SLAB);
  private sendOff = 0;
  private readonly rslab = { buf: Buffer.allocUnsafe(SLAB), off: 0 };
  private keepalive: NodeJS.Timeout | undefined;
  readonly maxDatagram: number;
  /** Datagrams sent and received, for benchmarks and status. */
  packetsSent = 0;
  packetsReceived = 0;

  constructor(
    private readonly opts: EngineOptions,
    family: 'udp4' | 'udp6' = 'udp4',
    loopback = false,
  ) {
    this.maxDatagram = opts.maxDatagram ?? (loopback ? LOOPBACK_DATAGRAM : WAN_DATAGRAM);
    this.loopback = loopback;
    const buffer = opts.socketBuffer ?? 4 * 1024 * 1024;
    this.socket = dgram.createSocket({ type: family, recvBufferSize: buffer, sendBufferSize: buffer });
    this.socket.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
    // UDP send errors (e.g. no route) are not fatal to QUIC: loss recovery or the idle timer handle them.
    this.socket.on('error', () => undefined);
  }

  /** Bind the UDP socket; with `listen`, peers may connect. */
  bind(host: string, port: number, listen: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      this.socket.once('error', onError);
      this.socket.bind(port, host, () => {
        this.socket.off('error', onError);
        const a = this.socket.address();
        this.local = { host: a.address, port: a.port };
        this.config = this.makeConfig();
        this.listening = listen;
        this.startKeepalive();
        resolve();
      });
    });
  }

  get port(): number {
    return this.local.port;
  }

  /**
   * quiche's configuration. The flow-control windows this endpoint advertises bound what a peer may
   * have in flight towards it. On loopback, where the path itself never drops, the one place a
   * datagram is lost is a full receive buffer (while this event loop is busy elsewhere), and each
   * loss halves the sender's congestion window: a window no larger than the socket's receive buffer
   * makes that impossible. Elsewhere the window follows the bandwidth-delay product (16 MiB).
   */
  private makeConfig(): QuicheConfig {
    const q = quiche();
    const opts = this.opts;
    // verifyPeer on both sides: the server asks for and checks the client's certificate too.
    const config = q.Config.withBoringSslCtx(true, false, Buffer.from(opts.tls.caPem), [Buffer.from(opts.tls.keyPem)], [Buffer.from(opts.tls.certPem)], null);
    // Linux reports twice the size it was given (the other half is its bookkeeping).
    const receiveBuffer = Math.floor(this.socket.getRecvBufferSize() / 2);
    const window = opts.streamWindow ?? (this.loopback ? Math.max(256 * 1024, Math.min(receiveBuffer, 16 * 1024 * 1024)) : 16 * 1024 * 1024);
    config.setApplicationProtos(['spawn-red/1']);
    config.setMaxIdleTimeout(opts.idleTimeoutMs ?? 30_000);
    config.setMaxRecvUdpPayloadSize(Math.max(this.maxDatagram, 1350));
    config.setMaxSendUdpPayloadSize(this.maxDatagram);
    config.setInitialMaxData(window);
    config.setInitialMaxStreamDataBidiLocal(window);
    config.setInitialMaxStreamDataBidiRemote(window);
    config.setInitialMaxStreamDataUni(0);
    config.setInitialMaxStreamsBidi(1); // the client's one stream; the server opens none
    config.setInitialMaxStreamsUni(0);
    config.setMaxStreamWindow(window);
    config.setMaxConnectionWindow(window);
    config.setDisableActiveMigration(true);
    if (opts.earlyData !== false) config.enableEarlyData();
    return config;
  }

  /** The kernel's socket buffer sizes (after its caps), for status and benchmarks. */
  bufferSizes(): { recv: number; send: number } {
    return { recv: this.socket.getRecvBufferSize(), send: this.socket.getSendBufferSize() };
  }

  /** Open a connection to `host` (an IP address) and `port`; `session` resumes an earlier one (0-RTT). */
  connect(host: string, port: number, session?: Buffer): QuicConn {
    const q = quiche();
    const remote = { host, port };
    const key = addrKey(host, port);
    const old = this.conns.get(key);
    if (old && !old.closed) throw new Error(`already connected to ${host}:${port}`);
    const qc = q.Connection.connect(PEER_NAME, crypto.randomBytes(q.MAX_CONN_ID_LEN), this.local, remote, this.config);
    if (session) {
      try {
        qc.setSession(session);
      } catch {
        // a stale or foreign ticket: a full handshake instead
      }
    }
    const conn = new QuicConn(this, qc, remote, key, false);
    this.conns.set(key, conn);
    this.touch(conn);
    return conn;
  }

  get connections(): QuicConn[] {
    return [...this.conns.values()];
  }

  /** @internal Something happened on `conn`: process it this turn. */
  touch(conn: QuicConn): void {
    this.dirty.add(conn);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.process());
    }
  }

  /** @internal A slab with at least `min` bytes free for stream reads. */
  recvSlab(min: number): { buf: Buffer; off: number } {
    if (this.rslab.buf.length - this.rslab.off < min) {
      this.rslab.buf = Buffer.allocUnsafe(SLAB);
      this.rslab.off = 0;
    }
    return this.rslab;
  }

  private onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed) return;
    this.packetsReceived++;
    const key = addrKey(rinfo.address, rinfo.port);
    let conn = this.conns.get(key);
    // A new connection: from an unknown address, or from a known one whose old connection is over.
    if ((!conn || conn.closed || conn.q.isDraining() || conn.q.isClosed()) && this.listening && isInitial(msg)) {
      if (conn && !conn.closed) conn.finish();
      conn = this.accept(msg, rinfo, key);
    }
    if (!conn || conn.closed) return;
    try {
      conn.q.recv(msg, conn.recvInfo);
    } catch {
      // quiche drops undecryptable or stray packets; a fatal error shows up as a closed connection
    }
    this.touch(conn);
  }

  private accept(msg: Buffer, rinfo: dgram.RemoteInfo, key: string): QuicConn | undefined {
    if (this.conns.size >= MAX_CONNECTIONS) return undefined;
    const q = quiche();
    let header;
    try {
      header = q.Header.fromSlice(msg, q.MAX_CONN_ID_LEN);
    } catch {
      return undefined;
    }
    if (!q.versionIsSupported(header.version)) {
      const out = Buffer.allocUnsafe(1350);
      const n = q.negotiateVersion(header.scid, header.dcid, out);
      this.socket.send(out.subarray(0, n), rinfo.port, rinfo.address);
      return undefined;
    }
    const remote = { host: rinfo.address, port: rinfo.port };
    const qc = q.Connection.accept(crypto.randomBytes(q.MAX_CONN_ID_LEN), null, this.local, remote, this.config);
    const conn = new QuicConn(this, qc, remote, key, true);
    this.conns.set(key, conn);
    this.opts.onAccept?.(conn);
    return conn;
  }

  /** Once per turn: every connection touched since the last one reads, writes, sends and re-arms. */
  private process(): void {
    this.scheduled = false;
    const now = Date.now();
    const list = [...this.dirty];
    this.dirty.clear();
    for (const conn of list) {
      if (conn.closed) continue;
      try {
        this.step(conn, now);
      } catch (e) {
        // A bug or a throwing handler must not stall the other connections of this endpoint.
        conn.close(`internal error: ${e instanceof Error ? e.message : String(e)}`.slice(0, 200));
      }
    }
  }

  /** One connection's turn: read, write, send, and follow its timer. */
  private step(conn: QuicConn, now: number): void {
    const q = conn.q;
    if (!conn.opened && q.isEstablished()) {
      conn.opened = true;
      conn.handlers.open?.();
    }
    let again = false;
    again = conn.pullIn() || again;
    conn.pushOut();
    again = this.flush(conn) || again;
    // A resumed client is in early data only once its first flight (ClientHello) went out: what
    // it queued before goes now, as 0-RTT data, instead of waiting for the handshake.
    if (conn.hasQueued && !q.isEstablished() && q.isInEarlyData()) {
      conn.pushOut();
      again = this.flush(conn) || again;
    }
    // Draining (the peer closed, or we did and said so): nothing more will be exchanged, so the
    // connection is over for its user now rather than after quiche's drain period (3 PTO).
    if (q.isClosed() || q.isDraining()) {
      if (this.conns.get(conn.key) === conn) this.conns.delete(conn.key);
      conn.finish();
      return;
    }
    conn.arm(now);
    if (again) this.touch(conn);
  }

  /** @internal See QuicConn.sendNow. */
  sendNow(conn: QuicConn): void {
    if (this.closed) return;
    try {
      conn.pushOut();
      if (this.flush(conn)) this.touch(conn);
      conn.arm(Date.now());
    } catch {
      this.touch(conn);
    }
  }

  /** Send what quiche has for `conn`, up to QUANTA_PER_TURN send quanta; true when more is left for next turn. */
  private flush(conn: QuicConn): boolean {
    const q = conn.q;
    const budget = Math.max(q.sendQuantum() * QUANTA_PER_TURN, MIN_SEND_BUDGET);
    let sent = 0;
    const max = this.maxDatagram;
    const { port, host } = conn.remote;
    while (sent < budget) {
      if (this.sendSlab.length - this.sendOff < max) {
        this.sendSlab = Buffer.allocUnsafe(SLAB);
        this.sendOff = 0;
      }
      let r: [number, unknown] | null;
      try {
        r = q.send(this.sendSlab.subarray(this.sendOff, this.sendOff + max));
      } catch {
        r = null;
      }
      if (!r) return false;
      const n = r[0];
      // The slab slice stays untouched until the kernel has it: the next packet uses the next slice.
      this.socket.send(this.sendSlab.subarray(this.sendOff, this.sendOff + n), port, host);
      this.sendOff += n;
      this.packetsSent++;
      sent += n;
    }
    return true;
  }

  private startKeepalive(): void {
    const idle = this.opts.idleTimeoutMs ?? 30_000;
    this.keepalive = setInterval(() => {
      for (const conn of this.conns.values()) {
        if (!conn.closed && conn.q.isEstablished()) {
          try {
            (conn.q as unknown as { sendAckEliciting(): void }).sendAckEliciting();
          } catch {
            // closing
          }
          this.touch(conn);
        }
      }
    }, Math.max(100, idle / 3));
    this.keepalive.unref();
  }

  /** Close every connection (telling the peers) and the socket. */
  async close(reason = 'endpoint closed'): Promise<void> {
    if (this.closed) return;
    for (const conn of this.conns.values()) conn.close(reason);
    // One turn to send the CONNECTION_CLOSE frames, then the socket goes.
    await new Promise<void>((r) => setImmediate(r));
    await new Promise<void>((r) => setImmediate(r));
    this.closed = true;
    if (this.keepalive) clearInterval(this.keepalive);
    for (const conn of this.conns.values()) conn.finish();
    this.conns.clear();
    await new Promise<void>((r) => {
      try {
        this.socket.close(() => r());
      } catch {
        r();
      }
    });
  }
}

function addrKey(host: string, port: number): string {
  return `${host}|${port}`;
}

/** A QUIC v1 long-header Initial packet (first byte 1100xxxx). */
function isInitial(msg: Buffer): boolean {
  return msg.length >= 1200 && (msg[0] & 0xf0) === 0xc0;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (net.isIPv4(host) && host.startsWith('127.'));
}
