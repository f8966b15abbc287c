import * as zmq from 'zeromq';
import { WireMessage } from './codec';
import { describeKey } from './describe-key';
import { formatEndpoint, parseEndpoint } from './endpoint';
import { errorText, StreamError } from './errors';
import { RECEIVE_YIELD_BYTES } from './gc-pacer';
import { bindEach, watchForNoPeer } from './peer-watch';
import { decodeReceived } from './receiver';
import { DEFAULT_BATCH_BYTES, Format, SendCallback, streamSender } from './sender';
import { openReliableZmqStream } from './delivery/zmq-links';
import type { WatermarkStore } from './delivery/engine';
import { CurveKeys, curveSocketOptions, watchCurve } from './curve';
import { Pattern, RECEIVES, SENDS } from './patterns';

/**
 * The six ZeroMQ patterns behind one small interface: a stream that sends (push, pub, router,
 * dealer), receives (pull, sub, router, dealer), reports its peers and problems, and closes
 * without losing what it was given (within the linger bound).
 */

export type { Pattern };
export { RECEIVES, SENDS };
/** Patterns whose messages carry an envelope frame: the topic (pub/sub) or the peer identity (router). */
const ENVELOPE: Record<Pattern, boolean> = { push: false, pull: false, pub: true, sub: true, router: true, dealer: false };

export interface ZmqStreamConfig {
  pattern: Pattern;
  format: Format;
  /** Endpoints to bind (`tcp://addr:port`). */
  bind: string[];
  /** Endpoints to connect to. */
  connect: string[];
  /** ZeroMQ high-water mark, and the queue length past which backpressure is reported. */
  highWater: number;
  /** Queued messages at which new ones are refused with EQUEUEFULL. */
  queueLimit: number;
  /** Largest payload in bytes; 0 for no limit. */
  maxMessageSize: number;
  /** Milliseconds between reconnection attempts. */
  reconnectMs: number;
  /** Batch small messages (spawn format). */
  batch: boolean;
  /** Bytes at which a batch is sealed (default 64 KiB). */
  batchBytes?: number;
  /** Subscription prefixes (sub); none means everything. */
  topics?: string[];
  /** Routing id of this socket as seen by a router (dealer). */
  identity?: string;
  /** Milliseconds without peers, while something waits, before ENOPEER is reported (default 5000). */
  noPeerMs?: number;
  /**
   * `exactly-once`: numbered, acknowledged, resent, deduplicated (native/delivery/); the peer must
   * use it too. Default `at-most-once`: plain ZeroMQ. Not for pub/sub.
   */
  delivery?: Delivery;
  /** CurveZMQ: the pipeline's key pair (./curve.ts); none for plain TCP. */
  curve?: CurveKeys;
  /** Exactly-once receivers: completed watermarks that outlive a crash (delivery/watermarks.ts). */
  watermarks?: WatermarkStore;
}

export type Delivery = 'at-most-once' | 'exactly-once';

export type StreamState = 'connecting' | 'ready' | 'error';

export interface StreamStatus {
  state: StreamState;
  peers: number;
  /** Short text for a node status: what is happening, with the endpoint. */
  text: string;
}

export interface ZmqStreamHandlers {
  /** `done`, in exactly-once mode with `acknowledges`, is to be called once the message was handled. */
  message(msg: WireMessage, key: Buffer | undefined, done?: () => void): void;
  /** Exactly-once: acknowledge a message when `done` is called, not when it is handed over. */
  acknowledges?: boolean;
  status(status: StreamStatus): void;
  problem(err: StreamError): void;
  backpressure?(on: boolean, queued: number): void;
}

export interface StreamStats {
  sentMessages: number;
  sentBytes: number;
  receivedMessages: number;
  receivedBytes: number;
  queued: number;
}

export interface ZmqStream {
  /** Queue a message: payload, envelope key (pub topic, router identity), metadata (whole-msg mode). */
  send(payload: unknown, key: Buffer | undefined, meta: Record<string, unknown> | undefined, cb: SendCallback): void;
  readonly peers: number;
  stats(): StreamStats;
  /** Flush what is queued (at most `lingerMs`), then close. Resolves with the messages left undelivered. */
  close(lingerMs: number): Promise<number>;
}

/** Frames libzmq may hold per peer and direction (see createSocket). */
const ZMQ_FRAMES_IN_FLIGHT = 64;
/** Receive turns between yields to the event loop, so downstream nodes run and backpressure reaches the sender. */
const YIELD_EVERY = 512;

function createSocket(cfg: ZmqStreamConfig): zmq.Socket {
  // libzmq's queues count frames, and a frame may be a batch of up to 64 KiB: a high-water mark of
  // 1000 frames could hold 64 MB per peer and direction. Our own queue keeps messages in order and
  // applies backpressure, so libzmq only needs enough frames to keep the socket busy.
  // Pub/sub is the exception: a pub never waits, it drops at its high-water mark, and consecutive
  // messages on different topics are separate frames, so pub and sub keep the full mark.
  const zmqHighWater = cfg.pattern === 'pub' || cfg.pattern === 'sub' ? cfg.highWater : Math.min(cfg.highWater, ZMQ_FRAMES_IN_FLIGHT);
  const common = {
    ...(SENDS[cfg.pattern] ? { sendHighWaterMark: zmqHighWater } : {}),
    ...(RECEIVES[cfg.pattern] ? { receiveHighWaterMark: zmqHighWater } : {}),
    reconnectInterval: cfg.reconnectMs,
    linger: 0, // set for real at close, once our own queue has drained
    // A ZAP domain makes libzmq refuse pre-3.0 ZMTP peers, so random bytes can no longer pass for an
    // old ZeroMQ peer and fail silently. Without a ZAP handler, real ZMTP 3 peers are admitted as before.
    zapDomain: 'spawn-red',
    // Memory guard in libzmq; the decoder gives the clear per-message error below this bound.
    maxMessageSize: cfg.maxMessageSize > 0 ? cfg.maxMessageSize + (cfg.batchBytes ?? DEFAULT_BATCH_BYTES) + 4096 : -1,
    ...(cfg.curve ? curveSocketOptions(cfg.curve, cfg.bind.length > 0) : {}),
  };
  switch (cfg.pattern) {
    case 'push':
      return new zmq.Push(common);
    case 'pull':
      return new zmq.Pull(common);
    case 'pub':
      return new zmq.Publisher(common);
    case 'sub':
      return new zmq.Subscriber(common);
    case 'router':
      // mandatory: a reply to an unknown identity fails loudly instead of vanishing.
      return new zmq.Router({ ...common, mandatory: true, ...(cfg.identity ? { routingId: cfg.identity } : {}) });
    case 'dealer':
      return new zmq.Dealer({ ...common, ...(cfg.identity ? { routingId: cfg.identity } : {}) });
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export function openZmqStream(cfg: ZmqStreamConfig, handlers: ZmqStreamHandlers): ZmqStream {
  if (cfg.delivery === 'exactly-once') return openReliableZmqStream(cfg, handlers);
  const socket = createSocket(cfg);
  const batchBytes = cfg.batchBytes ?? DEFAULT_BATCH_BYTES;
  let closed = false;
  let peers = 0;
  let bound = cfg.bind.length === 0;
  let lastError: string | undefined;
  let receivedMessages = 0;
  let receivedBytes = 0;
  const bindEndpoints: string[] = [];
  const connectEndpoints: string[] = [];

  for (const [list, role, out] of [
    [cfg.bind, 'bind', bindEndpoints],
    [cfg.connect, 'connect', connectEndpoints],
  ] as const) {
    for (const text of list) {
      try {
        out.push(formatEndpoint(parseEndpoint(text, role)));
      } catch (e) {
        lastError = errorText(e);
        queueMicrotask(() => handlers.problem(e as StreamError));
      }
    }
  }
  const where = [...bindEndpoints, ...connectEndpoints].join(', ') || '(no endpoint)';

  const report = () => {
    if (closed) return;
    let status: StreamStatus;
    if (lastError) status = { state: 'error', peers, text: lastError };
    else if (!bound) status = { state: 'connecting', peers, text: `binding ${bindEndpoints.join(', ')}` };
    else if (peers === 0) {
      status = {
        state: 'connecting',
        peers,
        text: bindEndpoints.length ? `waiting for peers on ${bindEndpoints.join(', ')}` : `connecting to ${connectEndpoints.join(', ')}`,
      };
    } else status = { state: 'ready', peers, text: `${peers} peer${peers === 1 ? '' : 's'}` };
    handlers.status(status);
  };

  const sender = streamSender(cfg, ENVELOPE[cfg.pattern], async (frames) => {
    // A router with no peer at all would wait for one instead of failing the reply.
    if (cfg.pattern === 'router' && peers === 0) {
      throw new StreamError('EHOSTUNREACH', `no peer with identity ${describeKey(frames[0])} is connected to ${where} (no peer at all)`);
    }
    try {
      await (socket as zmq.Push).send(frames);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'EHOSTUNREACH') {
        throw new StreamError('EHOSTUNREACH', `no peer with identity ${describeKey(frames[0])} is connected to ${where}`);
      }
      throw new StreamError(closed ? 'ECLOSED' : 'ESEND', `send on ${where} failed: ${errorText(e)}`);
    }
  }, (on, queued) => handlers.backpressure?.(on, queued));

  // Peer accounting from ZeroMQ's socket monitor. A peer counts once its ZeroMQ handshake
  // succeeded. A connection that closes before completing one was not a ZeroMQ peer (random bytes,
  // an HTTP client, a port scanner): libzmq drops it, sometimes without an error event, so that is
  // reported here. The monitor names only our endpoint, not the peer's, hence counters.
  const events = socket.events;
  let handshaking = 0;
  events.on('accept', () => handshaking++);
  events.on('connect', () => handshaking++);
  events.on('handshake', () => {
    handshaking = Math.max(0, handshaking - 1);
    peers++;
    report();
  });
  const notZeroMq = (address: string, why: string) =>
    handlers.problem(
      new StreamError(
        cfg.curve ? 'EAUTH' : 'EPROTO',
        `a peer on ${address} broke the ZeroMQ handshake (${why}): not a ZeroMQ peer, or garbage bytes${cfg.curve ? ", or its CurveZMQ key is not this pipeline's" : ''}; connection dropped`,
      ),
    );
  const handshakeError = (ev: { address: string; error: Error }) => {
    handshaking = Math.max(0, handshaking - 1);
    if (cfg.curve && bindEndpoints.length === 0) return; // reported by watchCurve
    notZeroMq(ev.address, errorText(ev.error));
  };
  events.on('handshake:error:protocol', handshakeError);
  events.on('handshake:error:other', handshakeError);
  watchCurve(events, where, cfg, () => (handshaking = Math.max(0, handshaking - 1)), handlers);
  events.on('disconnect', (ev) => {
    if (handshaking > 0) {
      handshaking--;
      // On the connecting side a peer that vanished mid-handshake is just a restart, not garbage.
      if (bindEndpoints.length > 0) notZeroMq(ev.address, 'closed before completing it');
      return;
    }
    peers = Math.max(0, peers - 1);
    report();
  });

  // ENOPEER: something waits (a queued message, or an input with nowhere to connect) and no peer came.
  const stopWatch = watchForNoPeer({
    ms: cfg.noPeerMs,
    where,
    connected: () => peers > 0,
    quiet: () => closed || !bound || lastError !== undefined,
    waiting: () => (SENDS[cfg.pattern] && cfg.pattern !== 'pub' ? sender.pending > 0 : connectEndpoints.length > 0),
    pending: () => sender.pending,
    problem: (e) => handlers.problem(e),
  });

  async function bindAll(): Promise<void> {
    const error = (text: string | undefined) => {
      lastError = text;
      report();
    };
    if (!(await bindEach(bindEndpoints, (ep) => socket.bind(ep), { closed: () => closed, error, problem: (e) => handlers.problem(e) }))) return;
    bound = true;
    report();
  }

  async function receiveLoop(): Promise<void> {
    const opts = {
      format: cfg.format,
      envelope: ENVELOPE[cfg.pattern] ? (1 as const) : (0 as const),
      optionalEnvelope: cfg.pattern === 'sub' && cfg.format === 'raw',
      maxMessageSize: cfg.maxMessageSize,
    };
    let sinceYield = 0;
    let sinceYieldBytes = 0;
    while (!closed) {
      let frames: Buffer[];
      try {
        frames = await (socket as zmq.Pull).receive();
      } catch (e) {
        if (closed) return;
        handlers.problem(new StreamError('ESEND', `receive on ${where} failed: ${errorText(e)}`));
        await sleep(100);
        continue;
      }
      let got;
      try {
        got = decodeReceived(frames, opts);
      } catch (e) {
        handlers.problem(new StreamError('EBADFRAME', `dropped a malformed message from a peer of ${where}: ${errorText(e)}`));
        continue;
      }
      receivedBytes += got.bytes;
      receivedMessages += got.messages.length;
      for (const m of got.messages) {
        if (m.refused) handlers.problem(new StreamError('EMSGSIZE', `refused a message from a peer of ${where}: ${m.refused}`));
        else handlers.message(m, got.key);
      }
      sinceYield += got.messages.length;
      sinceYieldBytes += got.bytes;
      if (sinceYield >= YIELD_EVERY || sinceYieldBytes >= RECEIVE_YIELD_BYTES) {
        sinceYield = sinceYieldBytes = 0;
        await new Promise<void>((r) => setImmediate(r));
      }
    }
  }

  async function start(): Promise<void> {
    report();
    await bindAll();
    if (closed) return;
    for (const ep of connectEndpoints) {
      try {
        socket.connect(ep);
      } catch (e) {
        lastError = `cannot connect to ${ep}: ${errorText(e)}`;
        handlers.problem(new StreamError('EENDPOINT', lastError));
      }
    }
    if (cfg.pattern === 'sub') {
      const topics = cfg.topics ?? [];
      if (topics.length === 0) (socket as zmq.Subscriber).subscribe();
      else (socket as zmq.Subscriber).subscribe(...topics);
    }
    report();
    if (RECEIVES[cfg.pattern]) void receiveLoop();
  }
  const started = start();

  return {
    send(payload, key, meta, cb) {
      if (!bound && !closed) {
        // Sends wait in the queue; ZeroMQ refuses a send while a bind is in progress.
        void started.then(() => sender.send(payload, key, meta, cb));
        return;
      }
      sender.send(payload, key, meta, cb);
    },
    get peers() {
      return peers;
    },
    stats: () => ({
      sentMessages: sender.sentMessages,
      sentBytes: sender.sentBytes,
      receivedMessages,
      receivedBytes,
      queued: sender.pending,
    }),
    async close(lingerMs) {
      const drained = await sender.drain(lingerMs);
      closed = true;
      stopWatch();
      const undelivered = drained ? 0 : sender.pending;
      if (!drained) sender.close(`the node closed before this message could be sent to ${where}`);
      // What ZeroMQ itself still holds gets the rest of the linger time.
      socket.linger = drained ? Math.max(lingerMs, 0) : 0;
      await started.catch(() => undefined);
      socket.close();
      return undelivered;
    },
  };
}
