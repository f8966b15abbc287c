import * as zmq from 'zeromq';
import { formatEndpoint, parseEndpoint } from '../endpoint';
import { errorText, StreamError } from '../errors';
import { RECEIVE_YIELD_BYTES } from '../gc-pacer';
import { bindEach, watchForNoPeer } from '../peer-watch';
import { DEFAULT_BATCH_BYTES, streamSender } from '../sender';
import type { StreamStatus, ZmqStream, ZmqStreamConfig, ZmqStreamHandlers } from '../zmq';
import { deliverFrameSet, DeliverContext, ReceiveCounts } from './deliver';
import { DeliveryEngine, Link } from './engine';
import { BEAT_MS, messageCount, WINDOW_BYTES } from './settings';
import { curveSocketOptions, watchCurve } from '../curve';

/**
 * Exactly-once delivery over ZeroMQ.
 *
 * A PUSH socket cannot carry acknowledgements back, and a DEALER round-robins even its replies, so
 * exactly-once mode changes the sockets under the hood while the node keeps its pattern's
 * semantics: the side that binds uses one ROUTER socket (it can address each peer by routing id),
 * the side that connects uses one DEALER socket per endpoint (each socket has exactly one peer, so
 * it addresses that peer too). Every peer is then a link both ways, whatever the pattern, and the
 * engine (./engine.ts) does the rest: round-robin over live links for push and dealer (as ZeroMQ
 * would), fair queueing on receive (one receive loop per socket), the window, acknowledgements,
 * resends and fail-over. A plain ZeroMQ peer, or a peer in at-most-once mode, is a different socket
 * type and fails the ZeroMQ handshake: both ends of a link must use the same delivery mode.
 */

const YIELD_EVERY = 512;
/** libzmq's own queue is not the bound (the window is), but is kept finite. */
const ZMQ_HWM = 100_000;

/** One send at a time per socket (zeromq.js refuses a second), in order; heartbeats skip a busy socket. */
class SerialWriter {
  private tail: Promise<void> = Promise.resolve();
  private queued = 0;
  constructor(private readonly socket: zmq.Router | zmq.Dealer) {}
  send(frames: Buffer[], droppable: boolean): Promise<void> {
    if (droppable && this.queued > 4) return Promise.resolve();
    this.queued++;
    const p = this.tail.then(() => this.socket.send(frames));
    this.tail = p.then(
      () => void this.queued--,
      () => void this.queued--,
    );
    return p;
  }
}

export function openReliableZmqStream(cfg: ZmqStreamConfig, handlers: ZmqStreamHandlers): ZmqStream {
  const pattern = cfg.pattern;
  const sends = pattern !== 'pull';
  const receives = pattern !== 'push';
  let closed = false;
  let lastError: string | undefined;
  const counts: ReceiveCounts = { messages: 0, bytes: 0 };
  const bindEndpoints = cfg.bind.map((e) => formatEndpoint(parseEndpoint(e, 'bind')));
  const connectEndpoints = cfg.connect.map((e) => formatEndpoint(parseEndpoint(e, 'connect')));
  const where = [...bindEndpoints, ...connectEndpoints].join(', ') || '(no endpoint)';
  const received: DeliverContext = { format: cfg.format, maxMessageSize: cfg.maxMessageSize, where, keyed: pattern === 'router', handlers, counts };
  const common = {
    sendHighWaterMark: ZMQ_HWM,
    receiveHighWaterMark: Math.min(cfg.highWater, 64),
    reconnectInterval: cfg.reconnectMs,
    linger: 0,
    zapDomain: 'spawn-red',
    maxMessageSize: cfg.maxMessageSize > 0 ? cfg.maxMessageSize + (cfg.batchBytes ?? DEFAULT_BATCH_BYTES) + 4096 : -1,
  };
  const router = bindEndpoints.length > 0 ? new zmq.Router({ ...common, ...(cfg.curve ? curveSocketOptions(cfg.curve, true) : {}), mandatory: true }) : undefined;
  const routerWriter = router ? new SerialWriter(router) : undefined;
  const dealers = new Map<string, { socket: zmq.Dealer; writer: SerialWriter }>();
  for (const ep of connectEndpoints) {
    const socket = new zmq.Dealer({ ...common, ...(cfg.curve ? curveSocketOptions(cfg.curve, false) : {}), ...(cfg.identity ? { routingId: cfg.identity } : {}) });
    dealers.set(`c:${ep}`, { socket, writer: new SerialWriter(socket) });
  }

  const report = () => {
    if (closed) return;
    const peers = engine.peers;
    let status: StreamStatus;
    if (lastError) status = { state: 'error', peers, text: lastError };
    else if (peers === 0) {
      status = { state: 'connecting', peers, text: bindEndpoints.length ? `waiting for peers on ${bindEndpoints.join(', ')}` : `connecting to ${connectEndpoints.join(', ')}` };
    } else status = { state: 'ready', peers, text: `${peers} peer${peers === 1 ? '' : 's'}, exactly-once` };
    handlers.status(status);
  };

  const format = cfg.format;
  const engine: DeliveryEngine = new DeliveryEngine(
    {
      windowFrames: cfg.highWater,
      windowBytes: WINDOW_BYTES,
      beatMs: BEAT_MS,
      deadMs: cfg.noPeerMs ?? 5000,
      addressed: pattern === 'router',
      ackOnDone: handlers.acknowledges === true,
      // Only a pure receiver stops reading: router and dealer read acknowledgements on the same socket.
      maxUndone: pattern === 'pull' ? { messages: Math.min(cfg.queueLimit / 4, 16_384), bytes: 16 * 1024 * 1024 } : undefined,
      count: messageCount(format),
      watermarks: cfg.watermarks,
    },
    {
      send(key, frames, control) {
        if (key.startsWith('r:')) return routerWriter!.send([Buffer.from(key.slice(2), 'latin1'), ...frames], control);
        const d = dealers.get(key);
        return d ? d.writer.send(frames, control) : Promise.reject(new Error(`no link ${key}`));
      },
      deliver: (link: Link, frames, skip, count, done) => deliverFrameSet(received, link, frames, skip, count, done),
      problem: (e) => handlers.problem(e),
      peers: () => report(),
    },
  );

  const sender = streamSender(cfg, pattern === 'router', (frames) => engine.transmit(frames), (on, queued) => handlers.backpressure?.(on, queued));

  function watchHandshakes(socket: zmq.Router | zmq.Dealer) {
    // Garbage and foreign peers at a listening port: reported, dropped, the socket keeps serving.
    const bad = (ev: { address: string; error: Error }) =>
      !(cfg.curve && bindEndpoints.length === 0) &&
      handlers.problem(new StreamError('EPROTO', `a peer on ${ev.address} broke the ZeroMQ handshake (${errorText(ev.error)}): not a spawn-red peer in exactly-once mode, or garbage bytes; connection dropped`));
    socket.events.on('handshake:error:protocol', bad);
    socket.events.on('handshake:error:other', bad);
    watchCurve(socket.events, where, cfg, () => undefined, handlers);
  }

  async function receiveLoop(socket: zmq.Router | zmq.Dealer, linkOf: (frames: Buffer[]) => [string, Buffer, Buffer[]]) {
    let sinceYield = 0;
    let sinceYieldBytes = 0;
    while (!closed) {
      let frames: Buffer[];
      if (!engine.canReceive()) await engine.whenCanReceive();
      try {
        frames = await socket.receive();
      } catch (e) {
        if (closed) return;
        handlers.problem(new StreamError('ESEND', `receive on ${where} failed: ${errorText(e)}`));
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      const [key, id, rest] = linkOf(frames);
      engine.receive(key, id, rest);
      for (const f of frames) sinceYieldBytes += f.length;
      if (++sinceYield >= YIELD_EVERY / 8 || sinceYieldBytes >= RECEIVE_YIELD_BYTES) {
        sinceYield = sinceYieldBytes = 0;
        await new Promise<void>((r) => setImmediate(r));
      }
    }
  }

  async function start(): Promise<void> {
    report();
    if (router) {
      watchHandshakes(router);
      const error = (text: string | undefined) => {
        lastError = text;
        report();
      };
      if (!(await bindEach(bindEndpoints, (ep) => router.bind(ep), { closed: () => closed, error, problem: (e) => handlers.problem(e) }))) return;
      void receiveLoop(router, (frames) => [`r:${frames[0].toString('latin1')}`, frames[0], frames.slice(1)]);
    }
    for (const [key, { socket }] of dealers) {
      const ep = key.slice(2);
      watchHandshakes(socket);
      socket.connect(ep);
      engine.addLink(key, Buffer.from(ep, 'latin1'));
      void receiveLoop(socket, (frames) => [key, Buffer.from(ep, 'latin1'), frames]);
    }
    report();
  }
  const started = start();
  if (!receives && !sends) throw new Error(`pattern ${pattern} neither sends nor receives`);

  const stopWatch = watchForNoPeer({
    ms: cfg.noPeerMs,
    where,
    connected: () => engine.peers > 0,
    quiet: () => closed,
    waiting: () => (sends ? sender.pending > 0 || engine.inFlight > 0 : connectEndpoints.length > 0),
    pending: () => sender.pending + engine.inFlight,
    problem: (e) => handlers.problem(e),
  });

  return {
    send(payload, key, meta, cb) {
      sender.send(payload, key, meta, cb);
    },
    get peers() {
      return engine.peers;
    },
    stats: () => ({
      sentMessages: sender.sentMessages,
      sentBytes: sender.sentBytes,
      receivedMessages: counts.messages,
      receivedBytes: counts.bytes,
      queued: sender.pending + engine.inFlight,
    }),
    async close(lingerMs) {
      const t0 = Date.now();
      const drained = await sender.drain(lingerMs);
      const settled = drained && (await engine.settle(Math.max(0, lingerMs - (Date.now() - t0))));
      const undelivered = (drained ? 0 : sender.close(`the node closed before this message could be sent to ${where}`)) + engine.close();
      closed = true;
      stopWatch();
      await started.catch(() => undefined);
      // Acknowledgements still owed go out before the sockets close.
      for (const s of [router, ...[...dealers.values()].map((d) => d.socket)]) {
        if (!s) continue;
        s.linger = settled ? 200 : 0;
        s.close();
      }
      return undelivered;
    },
  };
}
