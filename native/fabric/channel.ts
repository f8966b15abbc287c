import net from 'net';

/**
 * The TCP side channel beside a fabric stream, on the stage's port: the output side ("rdma out")
 * listens, each receiver ("efa in") connects. It carries the little the fabric itself cannot:
 *
 *   receiver → sender  {t:"hello", v, address, provider, id, chunk, credits}
 *                      its fabric address; the sender id to stamp on chunks; the chunk size;
 *                      the first credits (receive buffers posted for this sender)
 *   sender → receiver  {t:"welcome", v, address, provider}   or {t:"error", message}
 *   receiver → sender  {t:"credit", n}      n more buffers posted again: n more chunks may go
 *   receiver → sender  {t:"idle"}           nothing came for a while: polling slowly now
 *   sender → receiver  {t:"wake"}           chunks follow (after a pause, or after "idle")
 *   either             {t:"bye"}            closing on purpose (then the socket ends)
 *   receiver → sender  {t:"frames", f}      exactly-once only: a frame set of the delivery engine
 *                      (acknowledgements, resend requests, heartbeats), each frame base64
 *
 * hello carries `delivery: "exactly-once"` when the receiver runs in that mode; the sender refuses
 * a receiver whose mode differs from its own (both ends must agree, as with the provider).
 *
 * One JSON object per line. The connection closing is how either side learns its peer is gone.
 */

export const CHANNEL_VERSION = 1;
/** A line longer than this is not our protocol (fabric addresses are tens of bytes). */
const MAX_LINE = 64 * 1024;

export type ChannelMessage =
  | { t: 'hello'; v: number; address: string; provider: string; id: number; chunk: number; credits: number; delivery?: string }
  | { t: 'welcome'; v: number; address: string; provider: string }
  | { t: 'credit'; n: number }
  | { t: 'wake' }
  | { t: 'idle' }
  | { t: 'bye' }
  | { t: 'error'; message: string }
  | { t: 'frames'; f: string[] };

/** A frame set in a `frames` message. */
export function framesMessage(frames: Buffer[]): ChannelMessage {
  return { t: 'frames', f: frames.map((b) => b.toString('base64')) };
}

/** The frames of a `frames` message; undefined when it is not one we could have sent. */
export function framesOf(m: { f?: unknown }): Buffer[] | undefined {
  const f = m.f;
  if (!Array.isArray(f) || f.length === 0 || f.length > 16 || !f.every((x) => typeof x === 'string')) return undefined;
  return f.map((x: string) => Buffer.from(x, 'base64'));
}

export interface ChannelHandlers {
  message(m: ChannelMessage): void;
  /** Not our protocol: the line that failed, and why. The socket is destroyed. */
  garbage(why: string): void;
  /** The connection ended (either side, for any reason); `error` when it failed. */
  closed(error?: Error): void;
}

export class Channel {
  private partial = '';
  private ended = false;

  constructor(
    readonly socket: net.Socket,
    private readonly handlers: ChannelHandlers,
  ) {
    socket.setNoDelay(true);
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('error', (e) => this.end(e));
    socket.on('close', () => this.end());
  }

  get open(): boolean {
    return !this.ended && !this.socket.destroyed;
  }

  send(m: ChannelMessage): void {
    if (this.open) this.socket.write(JSON.stringify(m) + '\n');
  }

  /** Sends a last message (bye or error) and closes. */
  finish(m?: ChannelMessage): void {
    if (m && this.open) this.socket.end(JSON.stringify(m) + '\n');
    else this.socket.end();
    // A peer that never reads must not hold the socket open.
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(d: string): void {
    let text = this.partial + d;
    let nl: number;
    while ((nl = text.indexOf('\n')) >= 0) {
      const line = text.slice(0, nl);
      text = text.slice(nl + 1);
      let m: ChannelMessage;
      try {
        m = JSON.parse(line);
        if (!m || typeof m !== 'object' || typeof m.t !== 'string') throw new Error('not a message object');
      } catch (e) {
        return this.bad(`unreadable line ${JSON.stringify(line.slice(0, 40))}: ${(e as Error).message}`);
      }
      if (this.ended) return;
      this.handlers.message(m);
    }
    if (text.length > MAX_LINE) return this.bad(`a line of over ${MAX_LINE} bytes`);
    this.partial = text;
  }

  private bad(why: string): void {
    this.socket.destroy();
    if (this.ended) return;
    this.ended = true;
    this.handlers.garbage(why);
    this.handlers.closed();
  }

  private end(error?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.socket.destroy();
    this.handlers.closed(error);
  }
}
