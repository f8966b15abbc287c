import { WireMessage } from '../codec';
import { StreamError } from '../errors';
import { FabricHandlers, FabricInConfig, FabricOutConfig, FabricOutLinks, FabricStream, openFabricIn, openFabricOut } from '../fabric/stream';
import type { StreamStatus } from '../zmq';
import { deliverFrameSet, DeliverContext, ReceiveCounts } from './deliver';
import { DeliveryEngine, Link, WatermarkStore } from './engine';
import { HEADER_BYTES } from './protocol';
// WINDOW_BYTES (16 chunks of 1 MiB) is what the credits allow anyway.
import { BEAT_MS, messageCount, WINDOW_BYTES } from './settings';

/**
 * Exactly-once delivery over RDMA: the delivery engine (./engine.ts) on top of the fabric streams
 * of native/fabric/stream.ts, through their `links` hook.
 *
 * A link is one rdma out ↔ efa in pair. The fabric carries one way only (rdma out → efa in), so:
 *
 * - rdma out → efa in, over the fabric: data frame sets AND the sender's heartbeats, through the
 *   stream's `sendLink` (addressed to one receiver, in order with everything else to it). A
 *   heartbeat names the sender's next sequence number, so it must not overtake the data before
 *   it: over the TCP side channel it would, and every heartbeat would make the receiver ask for
 *   a resend of everything still in flight on the fabric.
 * - efa in → rdma out, over the TCP side channel (channel.ts `frames` messages): acknowledgements,
 *   resend requests and the receiver's heartbeats. They are small (36 bytes, every 2 ms or so
 *   under load), and that channel is the only way back there is; RDM endpoints are reliable and
 *   the channel is TCP, so nothing is lost while a connection lives, and when one breaks the
 *   engine's heartbeats, resends and fail-over take over, as they do for ZeroMQ.
 *
 * Link keys: on the rdma out, one per side-channel connection (a restarted or reconnected efa in
 * is a new link, and what the old one held moves to the live links after the peer timeout, as
 * with a ZeroMQ push in exactly-once mode); on the efa in, the sender's `host:port` (fixed links,
 * beating from the start, like the DEALER sockets of zmq-links.ts).
 *
 * With `acknowledges`, the efa in acknowledges a message once the application calls its done();
 * while more than `maxUndone` are delivered and not done, it stops reading the fabric (no credits
 * go back), so backpressure reaches the rdma out instead of memory growing.
 */

/** Heartbeats waiting behind data for one receiver: more would only say the same thing again. */
const MAX_QUEUED_BEATS = 2;

export interface ReliableFabricHandlers extends FabricHandlers {
  /** `done`, with `acknowledges`, is to be called once the message was handled. */
  message(msg: WireMessage, done?: () => void): void;
  /** Acknowledge a message when `done` is called, not when it is handed over. */
  acknowledges?: boolean;
}

export interface ReliableFabricOptions {
  /** A link silent this long is down (its unacknowledged messages go to another receiver); default 5000. */
  deadMs?: number;
  /** efa in: messages delivered and not done above which it stops reading (default 16,384). */
  maxUndone?: number;
  /** efa in: completed watermarks that outlive a crash (./watermarks.ts); none: in memory only. */
  watermarks?: WatermarkStore;
}

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

/** The fabric's status while it is not ready, else the engine's peers (links heard from). */
function linkStatus(fabric: StreamStatus, provider: string, peers: number, idle: string): StreamStatus {
  if (fabric.state !== 'ready') return fabric;
  if (peers === 0) return { state: 'connecting', peers: 0, text: idle };
  return { state: 'ready', peers, text: `${provider}: ${plural(peers, 'peer')}, exactly-once` };
}

/** rdma out in exactly-once mode. Throws FabricError when the provider cannot be opened. */
export function openReliableFabricOut(cfg: FabricOutConfig, handlers: FabricHandlers, opts: ReliableFabricOptions = {}): FabricStream {
  const where = `${cfg.host}:${cfg.port}`;
  let closed = false;
  let fabricStatus: StreamStatus = { state: 'connecting', peers: 0, text: 'starting' };
  // Assigned right after the fabric opens; the fabric calls back only from later turns of the loop
  // (its Sender transmits from a setImmediate at the earliest).
  let engine: DeliveryEngine | undefined;
  // The fabric stream's own Sender queues, batches and applies backpressure; the engine takes
  // each frame set from it (transmit) and addresses it to one receiver (sendLink).
  const links: FabricOutLinks = {
    control: (key, name, frames) => engine?.receive(key, Buffer.from(name, 'latin1'), frames),
    transmit: (frames) => engine!.transmit(frames),
    // The delivery header and its place in the chunk's preamble.
    overheadBytes: 4 + HEADER_BYTES,
    get peers() {
      return engine?.peers ?? 0;
    },
    get inFlight() {
      return engine?.inFlight ?? 0;
    },
    settle: (ms) => engine!.settle(ms).then(() => undefined),
    close() {
      closed = true;
      return engine!.close();
    },
  };
  const fabric = openFabricOut(
    { ...cfg, links },
    {
      message: () => undefined,
      status: (s) => {
        fabricStatus = s;
        report();
      },
      problem: (e) => handlers.problem(e),
      backpressure: (on, queued) => handlers.backpressure?.(on, queued),
    },
  );
  // A function declaration: the fabric reports its status while it opens, before `fabric` is set.
  function report(): void {
    if (!closed && engine) handlers.status(linkStatus(fabricStatus, fabric.providerName, engine.peers, `${fabric.providerName}: waiting for receivers on ${where}`));
  }
  const queuedBeats = new Map<string, number>();
  engine = new DeliveryEngine(
    {
      windowFrames: cfg.highWater,
      windowBytes: WINDOW_BYTES,
      beatMs: BEAT_MS,
      deadMs: opts.deadMs ?? cfg.noPeerMs ?? 5000,
      addressed: false,
      count: messageCount(cfg.format),
    },
    {
      send(key, frames, control) {
        if (!control) return fabric.sendLink!(key, frames);
        const n = queuedBeats.get(key) ?? 0;
        if (n >= MAX_QUEUED_BEATS) return Promise.resolve();
        queuedBeats.set(key, n + 1);
        return fabric.sendLink!(key, frames).finally(() => {
          const left = (queuedBeats.get(key) ?? 1) - 1;
          if (left > 0) queuedBeats.set(key, left);
          else queuedBeats.delete(key);
        });
      },
      deliver(link: Link, _frames, skip, count, done) {
        // Receivers send acknowledgements, not data: a frame set of data here is not from an efa in.
        handlers.problem(new StreamError('EPROTO', `receiver ${link.id.toString('latin1')} sent data to rdma out on ${where}; dropped`));
        if (done) for (let i = skip; i < count; i++) done(i);
      },
      problem: (e) => handlers.problem(e),
      peers: () => report(),
    },
  );
  const live = engine;
  report();

  return {
    send: fabric.send,
    get peers() {
      return live.peers;
    },
    providerName: fabric.providerName,
    stats: fabric.stats,
    close: (lingerMs) => fabric.close(lingerMs),
  };
}

/** efa in in exactly-once mode. Throws FabricError when the provider cannot be opened. */
export function openReliableFabricIn(cfg: FabricInConfig, handlers: ReliableFabricHandlers, opts: ReliableFabricOptions = {}): FabricStream {
  const where = cfg.connect.map((t) => `${t.host}:${t.port}`).join(', ');
  let closed = false;
  const counts: ReceiveCounts = { messages: 0, bytes: 0 };
  const received: DeliverContext = {
    format: cfg.format,
    maxMessageSize: cfg.maxMessageSize,
    where,
    sender: (link) => `rdma out at ${link.id.toString('latin1')}`,
    keyed: false,
    handlers: { message: (m, _key, done) => handlers.message(m, done), problem: (e) => handlers.problem(e) },
    counts,
  };
  let fabricStatus: StreamStatus = { state: 'connecting', peers: 0, text: 'starting' };
  let engine: DeliveryEngine | undefined;
  const fabric = openFabricIn(
    {
      ...cfg,
      links: {
        frames: (key, frames) => engine?.receive(key, Buffer.from(key, 'latin1'), frames),
        readable: () => !engine || engine.canReceive(),
        whenReadable: () => engine?.whenCanReceive() ?? Promise.resolve(),
      },
    },
    {
      message: () => undefined,
      status: (s) => {
        fabricStatus = s;
        report();
      },
      problem: (e) => handlers.problem(e),
    },
  );
  function report(): void {
    if (!closed && engine) handlers.status(linkStatus(fabricStatus, fabric.providerName, engine.peers, `${fabric.providerName}: connecting to ${where}`));
  }
  engine = new DeliveryEngine(
    {
      // The efa in sends nothing but control frames: its window is never used.
      windowFrames: 1,
      windowBytes: WINDOW_BYTES,
      beatMs: BEAT_MS,
      deadMs: opts.deadMs ?? 5000,
      addressed: false,
      ackOnDone: handlers.acknowledges === true,
      maxUndone: { messages: opts.maxUndone ?? 16_384, bytes: 16 * 1024 * 1024 },
      watermarks: opts.watermarks,
      count: messageCount(cfg.format),
    },
    {
      send: (key, frames) => fabric.sendLink!(key, frames),
      deliver: (link: Link, frames, skip, count, done) => deliverFrameSet(received, link, frames, skip, count, done),
      problem: (e) => handlers.problem(e),
      peers: () => report(),
    },
  );
  const live = engine;
  for (const t of cfg.connect) live.addLink(`${t.host}:${t.port}`, Buffer.from(`${t.host}:${t.port}`, 'latin1'));
  report();

  return {
    send: (_p, _k, _m, cb) => cb(new StreamError('ESEND', 'efa in only receives')),
    get peers() {
      return live.peers;
    },
    providerName: fabric.providerName,
    stats: () => ({ sentMessages: 0, sentBytes: 0, receivedMessages: counts.messages, receivedBytes: counts.bytes, queued: 0 }),
    async close(lingerMs) {
      live.close();
      closed = true;
      // Acknowledgements the engine scheduled go out before the side channels close.
      await new Promise<void>((r) => setImmediate(r));
      return fabric.close(lingerMs);
    },
  };
}
