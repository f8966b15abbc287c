import { errorText, StreamError } from '../errors';
import type { QuicConn } from '../quic/engine';
import { encodeData } from '../quic/framing';
import type { QuicLinkLayer, QuicStreamConfig } from '../quic/stream';
import type { ZmqStreamHandlers } from '../zmq';
import { deliverFrameSet, DeliverContext, ReceiveCounts } from './deliver';
import { DeliveryEngine, Link } from './engine';
import { BEAT_MS, messageCount, WINDOW_BYTES } from './settings';

/**
 * Exactly-once delivery over QUIC: the delivery engine (./engine.ts) on the connections of a QUIC
 * stream (native/quic/stream.ts), which still binds, dials, verifies certificates and greets.
 * openQuicStream plugs this link layer in itself when asked for `delivery: 'exactly-once'`; this
 * module does not import the stream, so the two do not form an import cycle.
 *
 * Every connection carries one link both ways, whatever the pattern: frame sets with their delivery
 * header go as DATA records, and acknowledgements and heartbeats come back the same way, so a push
 * reads its connections too. A link is named so that it outlives its connection: on the connecting
 * side by the endpoint, on the binding side by the link id the peer process says in its greeting
 * (a router: the dealer's identity). A connection that breaks and is dialled again therefore
 * continues the same link, and the engine resends what the receiver did not get; a peer process
 * that restarted is a new link, and the old one fails over to it once it is silent for the peer
 * timeout.
 *
 * QUIC gives no sign when a peer vanishes (a SIGKILLed process sends no CONNECTION_CLOSE, and the
 * idle timeout is 30 s), so the heartbeats decide: a connection whose link the engine has not heard
 * from for the peer timeout is closed here, and the connecting side dials again at once.
 *
 * An exactly-once receiver that is behind (DeliveryOptions.maxUndone) stops reading its
 * connections: QUIC flow control then holds the senders back, as the window does.
 */

/** A connection with this much unsent skips heartbeats and acknowledgements (later ones follow). */
const CONTROL_SKIP_BYTES = 4 * 1024 * 1024;

/** The link layer of an exactly-once QUIC stream (see QuicLinkLayer). */
export function quicLinks(cfg: QuicStreamConfig, handlers: ZmqStreamHandlers): QuicLinkLayer {
  const pattern = cfg.pattern;
  const format = cfg.format;
  const where = [...cfg.bind, ...cfg.connect].join(', ') || '(no endpoint)';
  const deadMs = cfg.noPeerMs ?? 5000;
  /**
   * The connection each link is on now, the id the application sees, and since when the peer's
   * silence counts: the connection came up, or we read again after holding back. When the peer was
   * last heard is the engine's (DeliveryEngine.heardAt), not kept a second time here.
   */
  const conns = new Map<string, QuicConn>();
  const ids = new Map<string, Buffer>();
  const since = new Map<string, number>();
  let paused = false;
  let stopped = false;
  const counts: ReceiveCounts = { messages: 0, bytes: 0 };
  const received: DeliverContext = { format, maxMessageSize: cfg.maxMessageSize, where, keyed: pattern === 'router', handlers, counts };

  const engine: DeliveryEngine = new DeliveryEngine(
    {
      windowFrames: cfg.highWater,
      windowBytes: WINDOW_BYTES,
      beatMs: BEAT_MS,
      deadMs,
      addressed: pattern === 'router',
      ackOnDone: handlers.acknowledges === true,
      maxUndone: pattern === 'pull' ? { messages: Math.min(cfg.queueLimit / 4, 16_384), bytes: 16 * 1024 * 1024 } : undefined,
      watermarks: cfg.watermarks,
      count: messageCount(format),
    },
    {
      send(key, frames, control) {
        const conn = conns.get(key);
        if (!conn || conn.closed) return Promise.reject(new Error(`no connection for link ${key}`));
        if (control && conn.queuedBytes > CONTROL_SKIP_BYTES) return Promise.resolve();
        for (const b of encodeData(frames)) conn.write(b);
        // Acknowledgements leave at once: Node-RED delivers in long turns of the event loop, and an
        // acknowledgement still queued when the process dies makes its messages come again.
        if (control) conn.sendNow();
        return Promise.resolve();
      },
      deliver: (link: Link, frames, skip, count, done) => deliverFrameSet(received, link, frames, skip, count, done),
      problem: (e) => handlers.problem(e),
      // The QUIC stream reports its connections itself.
      peers: () => undefined,
    },
  );

  /** Behind: stop reading every connection until the application caught up. */
  const holdBack = () => {
    if (paused || engine.canReceive()) return;
    paused = true;
    for (const c of conns.values()) c.pause();
    void engine.whenCanReceive().then(() => {
      paused = false;
      const now = Date.now();
      // Silence while we did not read is ours, not the peer's.
      for (const k of since.keys()) since.set(k, now);
      for (const c of conns.values()) c.resume();
    });
  };

  const watch = setInterval(() => {
    if (paused || stopped) return;
    const now = Date.now();
    for (const [key, conn] of conns) {
      const last = Math.max(since.get(key) ?? now, engine.heardAt(key) ?? 0);
      if (now - last > deadMs) conn.close(`no heartbeat from the peer for ${now - last} ms`);
    }
  }, BEAT_MS);
  watch.unref();

  return {
    transmit: (frames) => engine.transmit(frames),
    up(key, id, conn) {
      const old = conns.get(key);
      if (old && old !== conn && !old.closed) old.close('replaced by a new connection on the same link');
      conns.set(key, conn);
      ids.set(key, Buffer.from(id));
      since.set(key, Date.now());
      if (paused) conn.pause();
      // The connecting side knows its link before hearing from it: it beats first.
      if (key.startsWith('c:')) engine.addLink(key, Buffer.from(id));
    },
    frames(key, frames) {
      engine.receive(key, ids.get(key) ?? Buffer.from(key, 'latin1'), frames);
      holdBack();
    },
    down(key, conn) {
      if (conns.get(key) !== conn) return;
      conns.delete(key);
      since.delete(key);
      ids.delete(key);
    },
    get inFlight() {
      return engine.inFlight;
    },
    async finish(drained, ms) {
      if (drained) await engine.settle(ms);
      stopped = true;
      clearInterval(watch);
      return engine.close();
    },
    // The stream counts what its at-most-once path decodes; here the engine delivers.
    received: counts,
  };
}
