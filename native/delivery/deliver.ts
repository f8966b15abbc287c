import { errorText, StreamError } from '../errors';
import { Format } from '../sender';
import { decodeReceived } from '../receiver';
import type { ZmqStreamHandlers } from '../zmq';
import type { Link } from './engine';

/** Messages and payload bytes a stream received, for its stats. */
export interface ReceiveCounts {
  messages: number;
  bytes: number;
}

export interface DeliverContext {
  format: Format;
  maxMessageSize: number;
  /** Who sent a frame set, for messages (default: "a peer of <where>"). */
  sender?: (link: Link) => string;
  /** The stream's endpoints, for messages. */
  where: string;
  /** A router hands each message on with the identity of the link it came on. */
  keyed: boolean;
  handlers: Pick<ZmqStreamHandlers, 'message' | 'problem'>;
  counts: ReceiveCounts;
}

/**
 * The delivery engine's `deliver` for a pattern node's stream (ZeroMQ and QUIC links alike): decodes
 * one frame set and hands its messages from `skip` on to the node, each with its own completion.
 * A frame set that does not decode is reported and completed whole, so the sender does not resend
 * it forever; a message over the size limit is reported and completed alone.
 */
export function deliverFrameSet(ctx: DeliverContext, link: Link, frames: Buffer[], skip: number, count: number, done?: (i: number) => void): void {
  const from = () => (ctx.sender ? ctx.sender(link) : `a peer of ${ctx.where}`);
  let got;
  try {
    got = decodeReceived(frames, { format: ctx.format, envelope: 0, optionalEnvelope: false, maxMessageSize: ctx.maxMessageSize });
  } catch (e) {
    ctx.handlers.problem(new StreamError('EBADFRAME', `dropped a malformed message from ${from()}: ${errorText(e)}`));
    if (done) for (let i = skip; i < count; i++) done(i);
    return;
  }
  ctx.counts.bytes += got.bytes;
  const key = ctx.keyed ? link.id : undefined;
  for (let i = skip; i < got.messages.length; i++) {
    const m = got.messages[i];
    ctx.counts.messages++;
    if (m.refused) {
      ctx.handlers.problem(new StreamError('EMSGSIZE', `refused a message from ${from()}: ${m.refused}`));
      done?.(i);
    } else if (done) ctx.handlers.message(m, key, () => done(i));
    else ctx.handlers.message(m, key);
  }
  // A header that counts more messages than the frame set holds: the rest are done, or the
  // acknowledgements would stop there for good.
  if (done) for (let i = Math.max(skip, got.messages.length); i < count; i++) done(i);
}
