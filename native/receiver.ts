import { paceStreamedBytes } from './gc-pacer';
import { decodeFrames, FrameError, WireMessage } from './codec';
import { Format } from './sender';

/** What arrived in one transport message: its envelope key (topic or identity) and the messages. */
export interface Received {
  key: Buffer | undefined;
  messages: WireMessage[];
  bytes: number;
}

export interface ReceiveOptions {
  format: Format;
  /** How many leading frames are envelope (topic or identity): 0 or 1. */
  envelope: 0 | 1;
  /** In raw format a pub may leave out the topic frame; then a one-frame message has no topic. */
  optionalEnvelope: boolean;
  /** Largest accepted payload in bytes; 0 for no limit. */
  maxMessageSize: number;
}

/** Decode one transport message. Throws FrameError (never anything else) for bad input. */
export function decodeReceived(frames: Buffer[], opts: ReceiveOptions): Received {
  let bytes = 0;
  for (const f of frames) bytes += f.length;
  // Every transport's received frame sets pass here: the place to pace young-generation collections.
  paceStreamedBytes(bytes);
  let body = frames;
  let key: Buffer | undefined;
  if (opts.envelope === 1 && !(opts.optionalEnvelope && frames.length === 1)) {
    if (frames.length < 2) throw new FrameError(`message of ${frames.length} frame lacks its envelope (topic or identity)`);
    key = frames[0];
    body = frames.slice(1);
  }
  let messages: WireMessage[];
  if (opts.format === 'raw') {
    const size = bytes - (key?.length ?? 0);
    messages = [
      opts.maxMessageSize > 0 && size > opts.maxMessageSize
        ? { payload: undefined, refused: `message of ${size} bytes is over the maximum message size of ${opts.maxMessageSize} bytes` }
        : { payload: body.length === 1 ? body[0] : body },
    ];
  } else {
    messages = decodeFrames(body, opts.maxMessageSize);
  }
  return { key, messages, bytes };
}
