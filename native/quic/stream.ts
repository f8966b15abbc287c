import * as dns from 'dns';
import * as net from 'net';
import { describeKey } from '../describe-key';
import { parseEndpoint } from '../endpoint';
import { errorText, StreamError } from '../errors';
import { bindRetrying, watchForNoPeer } from '../peer-watch';
import { quicLinks } from '../delivery/quic-links';
import { decodeReceived } from '../receiver';
import { DEFAULT_BATCH_BYTES, streamSender } from '../sender';
import { Pattern, RECEIVES, SENDS, StreamStatus, ZmqStream, ZmqStreamConfig, ZmqStreamHandlers } from '../zmq';
import { isLoopback, LOOPBACK_DATAGRAM, QuicConn, QuicEndpoint, WAN_DATAGRAM } from './engine';
import { decodeData, encodeData, encodeRecord, Kind, RecordError, RecordReader } from './framing';
import { loadIdentity, TlsIdentity } from './pki';

/**
 * The six patterns over QUIC, behind the same interface as the ZeroMQ stream (native/zmq.ts), with
 * the same Sender (encoding, batching, queue limits, backpressure) and the same decoding:
 * - push/dealer send round-robin over the peers whose stream has room (a full one is skipped);
 * - pull/dealer/router/sub read every connection in turn, a bounded share per turn (fair queueing);
 * - pub sends each message to every sub whose subscriptions prefix its topic; a sub that falls
 *   too far behind misses messages, as with ZeroMQ's high-water mark (counted in the status);
 * - router knows its dealers by identity (the dealer's, or a random one) and fails a reply to an
 *   identity that is not connected with EHOSTUNREACH.
 * Either side may bind (QUIC server) or connect (QUIC client); both verify the other's certificate.
 */

export interface QuicStreamConfig extends ZmqStreamConfig {
  /** This runtime's certificates (see pki.ts); made on first use when the directory is empty. */
  tlsDir: string;
  /** Resume sessions on reconnect and send the greeting as 0-RTT early data (default true). */
  earlyData?: boolean;
  /** Milliseconds of silence after which a connection is given up (default 30000). */
  idleTimeoutMs?: number;
  /**
   * Exactly-once mode: the link layer of the delivery engine (native/delivery/quic-links.ts).
   * openQuicStream makes it itself for `delivery: 'exactly-once'`; given, it is used as it is.
   */
  links?: QuicLinkLayer;
}

/**
 * What exactly-once mode plugs into the stream. The stream still binds, dials, verifies and
 * greets; the link layer sends every frame set (engine.transmit) and takes every data record of a
 * greeted peer, in every pattern (acknowledgements come back to a push as data records).
 */
export interface QuicLinkLayer {
  transmit(frames: Buffer[]): Promise<void>;
  /**
   * A peer greeted. `key` names the link and stays the same when the same peer process reconnects;
   * `id` is what the application sees (a router's msg.identity).
   */
  up(key: string, id: Buffer, conn: QuicConn): void;
  frames(key: string, frames: Buffer[]): void;
  down(key: string, conn: QuicConn): void;
  /** Messages sent and not yet acknowledged. */
  readonly inFlight: number;
  /** After the Sender drained (or not): wait for acknowledgements, then stop; resolves with the messages left unacknowledged. */
  finish(drained: boolean, ms: number): Promise<number>;
  /** What the engine delivered (the stream's own counters see only at-most-once data). */
  readonly received: { messages: number; bytes: number };
}

const PARTNER: Record<Pattern, Pattern> = { push: 'pull', pull: 'push', pub: 'sub', sub: 'pub', router: 'dealer', dealer: 'router' };
const ENVELOPE: Record<Pattern, boolean> = { push: false, pull: false, pub: true, sub: true, router: true, dealer: false };
/** Bytes a connection may hold unsent before a sender waits for it (push, dealer, router). */
const CONN_QUEUE_BYTES = 1024 * 1024;
/** Bytes a pub lets pile up for one slow sub before it skips messages for that sub. */
const PUB_QUEUE_BYTES = 16 * 1024 * 1024;

interface Peer {
  conn: QuicConn;
  reader: RecordReader;
  where: string;
  ready: boolean;
  identity?: Buffer;
  /** Subscription prefixes of a sub peer (pub side). */
  subs: Buffer[];
  /** Exactly-once: the delivery link this connection carries, and the peer's link id (server side). */
  link?: string;
  linkId?: string;
}

interface Target {
  text: string;
  host: string;
  port: number;
  ep?: QuicEndpoint;
  session?: Buffer;
  peer?: Peer;
  retry?: NodeJS.Timeout;
  /** Exactly-once: names this side of the link to the server, the same on every reconnection. */
  linkId: string;
}

/** What the sides say first: who they are. */
interface Hello {
  pattern: Pattern;
  identity?: string; // hex
  /** Absent: at-most-once. Both ends of a connection must use the same delivery mode. */
  delivery?: string;
  /** Exactly-once, connecting side: its link id (hex), stable across reconnections of this process. */
  link?: string;
}

export interface QuicStream extends ZmqStream {
  readonly endpoints: QuicEndpoint[];
  /** Connections that resumed a session, and that carried 0-RTT early data. */
  readonly resumed: number;
  readonly earlyData: number;
  /** A router: a dealer with this identity is connected. */
  hasIdentity(key: Buffer | undefined): boolean;
}

export function openQuicStream(cfg: QuicStreamConfig, handlers: ZmqStreamHandlers): QuicStream {
  // Exactly-once is decided here, as openZmqStream does, not by each caller: a direct caller asking
  // for it must not silently get at-most-once.
  if (cfg.delivery === 'exactly-once' && !cfg.links) cfg = { ...cfg, links: quicLinks(cfg, handlers) };
  const batchBytes = cfg.batchBytes ?? DEFAULT_BATCH_BYTES;
  const maxRecord = (cfg.maxMessageSize > 0 ? cfg.maxMessageSize : 2 ** 31 - 64) + batchBytes + 64 * 1024;
  const identity = cfg.pattern === 'dealer' ? Buffer.from(cfg.identity ?? randomIdentity(), cfg.identity ? 'utf8' : 'hex') : undefined;
  let closed = false;
  let lastError: string | undefined;
  let receivedMessages = 0;
  let receivedBytes = 0;
  let pubSkipped = 0;
  let resumed = 0;
  let earlyData = 0;
  const peers = new Set<Peer>();
  const byIdentity = new Map<string, Peer>();
  const servers: QuicEndpoint[] = [];
  const targets: Target[] = [];
  const binds: { host: string; port: number; text: string }[] = [];
  let bound = cfg.bind.length === 0;
  let tls: TlsIdentity | undefined;

  const parse = (text: string, role: 'bind' | 'connect') => {
    const e = parseEndpoint(text.replace(/^quic:\/\//, 'tcp://'), role);
    return { host: e.host.replace(/^\[|\]$/g, ''), port: e.port, text: `quic://${e.host}:${e.port}` };
  };
  for (const text of cfg.bind) {
    try {
      binds.push(parse(text, 'bind'));
    } catch (e) {
      lastError = errorText(e);
      queueMicrotask(() => handlers.problem(e as StreamError));
    }
  }
  for (const text of cfg.connect) {
    try {
      targets.push({ ...parse(text, 'connect'), linkId: randomIdentity() + randomIdentity() });
    } catch (e) {
      lastError = errorText(e);
      queueMicrotask(() => handlers.problem(e as StreamError));
    }
  }
  const where = [...binds.map((b) => b.text), ...targets.map((t) => t.text)].join(', ') || '(no endpoint)';
  const readyCount = () => {
    let n = 0;
    for (const p of peers) if (p.ready) n++;
    return n;
  };

  const report = () => {
    if (closed) return;
    const n = readyCount();
    let status: StreamStatus;
    if (lastError) status = { state: 'error', peers: n, text: lastError };
    else if (!bound) status = { state: 'connecting', peers: n, text: `binding ${binds.map((b) => b.text).join(', ')}` };
    else if (n === 0) {
      status = {
        state: 'connecting',
        peers: n,
        text: binds.length ? `waiting for peers on ${binds.map((b) => b.text).join(', ')}` : `connecting to ${targets.map((t) => t.text).join(', ')}`,
      };
    } else {
      const skipped = pubSkipped > 0 ? `, ${pubSkipped} skipped for slow subs` : '';
      status = { state: 'ready', peers: n, text: `quic: ${n} peer${n === 1 ? '' : 's'}${skipped}${cfg.links ? ', exactly-once' : ''}` };
    }
    handlers.status(status);
  };

  // One waiter at a time: the Sender transmits one frame set after another.
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const changed = () =>
    new Promise<void>((resolve) => {
      wake = resolve;
    });

  const writeData = (peer: Peer, frames: Buffer[]) => {
    for (const b of encodeData(frames)) peer.conn.write(b);
  };

  let rr = 0;
  const pickRoundRobin = (): Peer | undefined => {
    const list = [...peers].filter((p) => p.ready);
    for (let i = 0; i < list.length; i++) {
      const p = list[(rr + i) % list.length];
      if (p.conn.queuedBytes < CONN_QUEUE_BYTES) {
        rr = (rr + i + 1) % list.length;
        return p;
      }
    }
    return undefined;
  };

  async function transmit(frames: Buffer[]): Promise<void> {
    switch (cfg.pattern) {
      case 'pub': {
        const topic = frames[0];
        for (const p of peers) {
          if (!p.ready || !p.subs.some((s) => startsWith(topic, s))) continue;
          if (p.conn.queuedBytes > PUB_QUEUE_BYTES) pubSkipped++;
          else writeData(p, frames);
        }
        return;
      }
      case 'router': {
        const key = frames[0];
        for (;;) {
          const p = byIdentity.get(key.toString('latin1'));
          if (!p) {
            throw new StreamError('EHOSTUNREACH', `no peer with identity ${describeKey(key)} is connected to ${where}${readyCount() === 0 ? ' (no peer at all)' : ''}`);
          }
          if (p.conn.queuedBytes < CONN_QUEUE_BYTES) return writeData(p, frames.slice(1));
          await changed();
          if (closed) throw new StreamError('ECLOSED', `the node closed before this message could be sent to ${where}`);
        }
      }
      default:
        for (;;) {
          const p = pickRoundRobin();
          if (p) return writeData(p, frames);
          await changed();
          if (closed) throw new StreamError('ECLOSED', `the node closed before this message could be sent to ${where}`);
        }
    }
  }

  const sender = streamSender(cfg, ENVELOPE[cfg.pattern], cfg.links ? (f) => cfg.links!.transmit(f) : transmit, (on, queued) => handlers.backpressure?.(on, queued));

  const receiveOpts = {
    format: cfg.format,
    envelope: ENVELOPE[cfg.pattern] ? (1 as const) : (0 as const),
    optionalEnvelope: cfg.pattern === 'sub' && cfg.format === 'raw',
    maxMessageSize: cfg.maxMessageSize,
  };

  const delivery = cfg.links ? 'exactly-once' : 'at-most-once';
  const hello = (link?: string): Buffer => {
    const h: Hello = {
      pattern: cfg.pattern,
      ...(identity ? { identity: identity.toString('hex') } : {}),
      ...(cfg.links ? { delivery, ...(link ? { link } : {}) } : {}),
    };
    return encodeRecord(Kind.Hello, Buffer.from(JSON.stringify(h)));
  };

  const greet = (peer: Peer, link?: string) => {
    peer.conn.write(hello(link));
    if (cfg.pattern === 'sub') {
      const topics = cfg.topics && cfg.topics.length > 0 ? cfg.topics : [''];
      for (const t of topics) peer.conn.write(encodeRecord(Kind.Subscribe, Buffer.from(t, 'utf8')));
    }
  };

  const refuse = (peer: Peer, code: 'EPROTO' | 'EBADFRAME', text: string) => {
    handlers.problem(new StreamError(code, text));
    peer.conn.close(text.slice(0, 200));
  };

  function onHello(peer: Peer, body: Buffer) {
    let h: Hello;
    try {
      h = JSON.parse(body.toString('utf8')) as Hello;
    } catch {
      return refuse(peer, 'EPROTO', `a peer on ${peer.where} sent an unreadable greeting: not a spawn-red QUIC peer; connection dropped`);
    }
    if (h.pattern !== PARTNER[cfg.pattern]) {
      return refuse(peer, 'EPROTO', `a QUIC ${h.pattern} on ${peer.where} connected to this ${cfg.pattern}: a ${cfg.pattern} talks to a ${PARTNER[cfg.pattern]}; connection dropped`);
    }
    if ((h.delivery ?? 'at-most-once') !== delivery) {
      return refuse(peer, 'EPROTO', `a QUIC ${h.pattern} on ${peer.where} uses delivery ${h.delivery ?? 'at-most-once'}, this ${cfg.pattern} ${delivery}: both ends must use the same delivery mode; connection dropped`);
    }
    if (cfg.links && peer.conn.isServer) {
      // The link is the peer process's (its link id), or the dealer's identity: a reconnection
      // continues it, and the connection it replaces (still open here, the peer gave up on it) goes.
      peer.linkId = h.link ?? randomIdentity();
      peer.link = cfg.pattern === 'router' ? `r:${h.identity ?? peer.linkId}` : `r:${peer.linkId}`;
      for (const other of peers) {
        if (other !== peer && other.linkId === peer.linkId && !other.conn.closed) other.conn.close('replaced by a new connection from the same peer');
      }
    }
    if (cfg.pattern === 'router') {
      peer.identity = h.identity ? Buffer.from(h.identity, 'hex') : Buffer.from(randomIdentity(), 'hex');
      const id = peer.identity.toString('latin1');
      const other = byIdentity.get(id);
      if (other && other !== peer && !other.conn.closed && !(cfg.links && other.linkId === peer.linkId)) {
        return refuse(peer, 'EPROTO', `a dealer on ${peer.where} uses identity ${describeKey(peer.identity)}, which another connected dealer already has; connection dropped`);
      }
      byIdentity.set(id, peer);
    }
    if (peer.conn.isServer) greet(peer);
    peer.ready = true;
    if (cfg.links) cfg.links.up(peer.link!, peer.identity ?? Buffer.from(peer.link!, 'latin1'), peer.conn);
    if (lastError && lastError.startsWith('TLS')) lastError = undefined;
    report();
    notify();
  }

  function onRecord(peer: Peer, kind: Kind, body: Buffer) {
    switch (kind) {
      case Kind.Hello:
        return onHello(peer, body);
      case Kind.Subscribe:
        if (cfg.pattern === 'pub') peer.subs.push(Buffer.from(body));
        return;
      case Kind.Bye:
        peer.conn.close();
        return;
      case Kind.Data: {
        if (cfg.links && peer.ready) {
          let frames;
          try {
            frames = decodeData(body);
          } catch (e) {
            handlers.problem(new StreamError('EBADFRAME', `dropped a malformed message from a peer of ${where}: ${errorText(e)}`));
            return;
          }
          return cfg.links.frames(peer.link!, frames);
        }
        if (!peer.ready || !RECEIVES[cfg.pattern]) return refuse(peer, 'EPROTO', `a peer on ${peer.where} sent data out of turn; connection dropped`);
        let got;
        try {
          const frames = decodeData(body);
          if (cfg.pattern === 'router') frames.unshift(peer.identity!);
          got = decodeReceived(frames, receiveOpts);
        } catch (e) {
          handlers.problem(new StreamError('EBADFRAME', `dropped a malformed message from a peer of ${where}: ${errorText(e)}`));
          return;
        }
        receivedBytes += got.bytes;
        receivedMessages += got.messages.length;
        if (cfg.pattern === 'sub' && got.key && cfg.topics && cfg.topics.length > 0 && !cfg.topics.some((t) => startsWith(got.key!, Buffer.from(t)))) return;
        for (const m of got.messages) {
          if (m.refused) handlers.problem(new StreamError('EMSGSIZE', `refused a message from a peer of ${where}: ${m.refused}`));
          else handlers.message(m, got.key);
        }
        return;
      }
      default:
        return refuse(peer, 'EPROTO', `a peer on ${peer.where} sent a record of unknown kind ${kind as number}; connection dropped`);
    }
  }

  function attach(conn: QuicConn, onGone: (reason: string | undefined) => void): Peer {
    const peer: Peer = {
      conn,
      where: `quic://${conn.remote.host}:${conn.remote.port}`,
      ready: false,
      subs: [],
      reader: undefined as unknown as RecordReader,
    };
    peer.reader = new RecordReader(maxRecord, (kind, body) => onRecord(peer, kind, body));
    conn.drainMark = CONN_QUEUE_BYTES / 2;
    peers.add(peer);
    conn.handlers = {
      open: () => {
        if (conn.q.isResumed()) resumed++;
      },
      data: (chunk) => {
        try {
          peer.reader.push(chunk);
        } catch (e) {
          if (e instanceof RecordError) refuse(peer, 'EBADFRAME', `a peer on ${peer.where} sent a malformed stream (${e.message}); connection dropped`);
          else throw e;
        }
      },
      drain: notify,
      close: (reason) => {
        if (conn.sawEarlyData) earlyData++;
        peers.delete(peer);
        if (peer.identity && byIdentity.get(peer.identity.toString('latin1')) === peer) byIdentity.delete(peer.identity.toString('latin1'));
        if (cfg.links && peer.link && peer.ready) cfg.links.down(peer.link, conn);
        if (reason && reason.startsWith('TLS') && !closed) {
          lastError = `${reason} (${peer.where})`;
          handlers.problem(new StreamError('ETLS', `${peer.where}: ${reason}`));
        }
        onGone(reason);
        report();
        notify();
      },
    };
    return peer;
  }

  // ENOPEER: something waits (a queued message, or an input with nowhere to connect) and no peer came.
  const stopWatch = watchForNoPeer({
    ms: cfg.noPeerMs,
    where,
    connected: () => readyCount() > 0,
    quiet: () => closed || !bound,
    waiting: () => (SENDS[cfg.pattern] && cfg.pattern !== 'pub' ? sender.pending + (cfg.links?.inFlight ?? 0) > 0 : targets.length > 0),
    pending: () => sender.pending + (cfg.links?.inFlight ?? 0),
    problem: (e) => handlers.problem(e),
  });

  const engineOptions = (extra: Partial<ConstructorParameters<typeof QuicEndpoint>[0]>) => ({
    tls: tls!,
    earlyData: cfg.earlyData !== false,
    idleTimeoutMs: cfg.idleTimeoutMs,
    ...extra,
  });

  async function bindAll(): Promise<void> {
    for (const b of binds) {
      const host = b.host === '*' ? '0.0.0.0' : b.host;
      const bindOnce = async () => {
        // A server sends datagrams as large as each client says it takes (clients on loopback take more).
        const ep = new QuicEndpoint(
          engineOptions({ maxDatagram: LOOPBACK_DATAGRAM, onAccept: (conn) => void attach(conn, () => undefined) }),
          net.isIPv6(host) ? 'udp6' : 'udp4',
          true,
        );
        try {
          await ep.bind(host, b.port, true);
        } catch (e) {
          void ep.close();
          throw e;
        }
        servers.push(ep);
      };
      const ok = await bindRetrying(b.text, bindOnce, {
        closed: () => closed,
        kind: 'UDP address',
        failed: (err) => {
          lastError = err.message;
          handlers.problem(err);
          report();
        },
      });
      if (!ok) return;
      if (lastError && !lastError.startsWith('TLS')) lastError = undefined;
    }
    bound = true;
    report();
  }

  async function dial(t: Target): Promise<void> {
    t.retry = undefined;
    if (closed) return;
    try {
      if (!t.ep) {
        const ip = net.isIP(t.host) ? t.host : (await dns.promises.lookup(t.host)).address;
        const loop = isLoopback(ip);
        const ep = new QuicEndpoint(engineOptions({ maxDatagram: loop ? LOOPBACK_DATAGRAM : WAN_DATAGRAM }), net.isIPv6(ip) ? 'udp6' : 'udp4', loop);
        // Clients of loopback peers stay on loopback; others take any local address.
        await ep.bind(loop ? (net.isIPv6(ip) ? '::1' : '127.0.0.1') : net.isIPv6(ip) ? '::' : '0.0.0.0', 0, false);
        if (closed) return void ep.close();
        t.host = ip;
        t.ep = ep;
      }
      const conn = t.ep.connect(t.host, t.port, cfg.earlyData === false ? undefined : t.session);
      const peer = attach(conn, () => {
        t.session = conn.session() ?? t.session;
        t.peer = undefined;
        if (!closed) t.retry = setTimeout(() => void dial(t), cfg.reconnectMs);
      });
      t.peer = peer;
      peer.link = `c:${t.text}`;
      // Sent at once: on a resumed session this goes out as 0-RTT early data.
      greet(peer, t.linkId);
    } catch (e) {
      if (closed) return;
      lastError = `cannot connect to ${t.text}: ${errorText(e)}`;
      handlers.problem(new StreamError('EENDPOINT', lastError));
      report();
      t.retry = setTimeout(() => void dial(t), Math.max(cfg.reconnectMs, 1000));
    }
  }

  async function start(): Promise<void> {
    try {
      tls = loadIdentity(cfg.tlsDir);
    } catch (e) {
      lastError = `QUIC certificates: ${errorText(e)}`;
      handlers.problem(new StreamError('ETLS', lastError));
      report();
      return;
    }
    report();
    await bindAll();
    if (closed) return;
    for (const t of targets) void dial(t);
    report();
  }
  const started = start();

  const allEndpoints = () => [...servers, ...(targets.map((t) => t.ep).filter(Boolean) as QuicEndpoint[])];

  return {
    send(payload, key, meta, cb) {
      sender.send(payload, key, meta, cb);
    },
    get peers() {
      return readyCount();
    },
    get endpoints() {
      return allEndpoints();
    },
    hasIdentity: (key) => key !== undefined && byIdentity.has(key.toString('latin1')),
    get resumed() {
      return resumed;
    },
    get earlyData() {
      let n = earlyData;
      for (const p of peers) if (p.conn.sawEarlyData) n++;
      return n;
    },
    stats: () => ({
      sentMessages: sender.sentMessages,
      sentBytes: sender.sentBytes,
      receivedMessages: cfg.links ? cfg.links.received.messages : receivedMessages,
      receivedBytes: cfg.links ? cfg.links.received.bytes : receivedBytes,
      queued: sender.pending + (cfg.links?.inFlight ?? 0),
    }),
    async close(lingerMs) {
      const t0 = Date.now();
      const drained = await sender.drain(lingerMs);
      const unacknowledged = cfg.links ? await cfg.links.finish(drained, Math.max(0, lingerMs - (Date.now() - t0))) : 0;
      closed = true;
      notify();
      stopWatch();
      for (const t of targets) if (t.retry) clearTimeout(t.retry);
      const undelivered = (drained ? 0 : sender.pending) + unacknowledged;
      if (!drained) sender.close(`the node closed before this message could be sent to ${where}`);
      await started.catch(() => undefined);
      if (SENDS[cfg.pattern] && drained) {
        // A clean close: "bye" after the data; each peer closes once it has read everything before it.
        for (const p of peers) if (p.ready) p.conn.write(encodeRecord(Kind.Bye, Buffer.alloc(0)));
        const left = Math.max(0, lingerMs - (Date.now() - t0));
        const until = Date.now() + left;
        while ([...peers].some((p) => p.ready && !p.conn.closed) && Date.now() < until) await sleep(10);
      }
      // Exactly-once: acknowledgements still owed leave before the connections close.
      if (cfg.links) for (let i = 0; i < 20 && [...peers].some((p) => !p.conn.closed && p.conn.queuedBytes > 0); i++) await sleep(10);
      await Promise.all(allEndpoints().map((ep) => ep.close(`${cfg.pattern} closed`)));
      return undelivered;
    },
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

function startsWith(topic: Buffer, prefix: Buffer): boolean {
  return prefix.length <= topic.length && topic.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}

function randomIdentity(): string {
  return '00' + Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, '0');
}
