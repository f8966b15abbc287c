import type { Node, NodeAPI, NodeMessage, NodeMessageInFlow } from 'node-red';
import { WireMessage } from '../../native/codec';
import { StreamError } from '../../native/errors';
import { Pattern, RECEIVES, SENDS, ZmqStream } from '../../native/zmq';
import { bindsFor, ConfigError, lingerMs, PatternNodeDef, streamConfig } from './config';
import { isInputPattern } from './pipeline';
import { Rates, readyText, watchRates } from './live-status';
import { sourceEndpoints } from './source';
import { registerStats } from './stats';
import { openTransport, transportOption } from './transport';
import { ProblemReporter } from './problems';
import { exactlyOnceReceiver } from './receiver-setup';
import { StatusView } from './status-view';

/**
 * One implementation for the six ZeroMQ pattern nodes: a thin adapter between Node-RED messages
 * and a transport stream from native/. The pattern decides which half exists (send, receive or
 * both) and what the envelope means (pub/sub topic, router identity).
 */

type Msg = NodeMessage & Record<string, unknown>;

/** The transport the status names: these nodes' streams are ZeroMQ over TCP. */
const TRANSPORT = 'tcp';

/** Properties Node-RED owns or that travel in the envelope instead of the metadata. */
const NOT_META = new Set(['_msgid', 'payload']);

/**
 * A _msgid for each received message. Node-RED would make one from eight Math.random() calls per
 * message, a measurable share of the receive path at 100k+ messages/s; a random per-process prefix
 * and a counter are as unique within the runtime, at the cost of one string.
 */
const ID_PREFIX = Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, '0');
let idCounter = 0;
export function nextMsgId(): string {
  idCounter = (idCounter + 1) >>> 0;
  return ID_PREFIX + idCounter.toString(16).padStart(8, '0');
}

export function metaOf(msg: Msg): Record<string, unknown> {
  const meta: Record<string, unknown> = {};
  for (const k of Object.keys(msg)) if (!NOT_META.has(k)) meta[k] = msg[k];
  return meta;
}

function toKey(value: unknown): Buffer | undefined {
  if (value === undefined || value === null) return undefined;
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value);
  // An identity that went through JSON (e.g. whole-msg mode, or a file) comes back as {type,data}.
  if (typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    return Buffer.from((value as { data: number[] }).data);
  }
  return Buffer.from(String(value), 'utf8');
}

export function registerPatternNode(RED: NodeAPI, pattern: Pattern): void {
  function PatternNode(this: Node, def: PatternNodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const problems = new ProblemReporter(node, RED.events);
    const wholeMsg = def.wholeMsg === true;
    const fixedTopic = def.topicMode === 'fixed' ? def.topic ?? '' : undefined;

    let rates: Rates | undefined;
    const status = new StatusView(node, (text) => readyText(text, TRANSPORT, rates));
    let stream: ZmqStream;
    let linger: number;
    let unregisterStats = () => undefined as void;
    let stopRates = () => undefined as void;
    let stopCompletion = () => undefined as void;
    try {
      let fromSource: string[] = [];
      if (def.sourceStage && isInputPattern(pattern) && !bindsFor(pattern, def)) {
        const src = sourceEndpoints(RED, pattern, def.sourceStage);
        fromSource = src.endpoints;
        node.log(`source stage "${def.sourceStage}": ${src.endpoints.join(', ')} (from ${src.from})`);
      }
      const cfg = streamConfig(pattern, def, fromSource, process.env, RED.settings.userDir as string | undefined);
      const transport = transportOption(def.transport);
      // Exactly-once receivers remember what they finished across a crash and acknowledge when the
      // wired nodes are done (./receiver-setup.ts); released on close and when the setup below fails.
      const receiver = cfg.delivery === 'exactly-once' && RECEIVES[pattern] ? exactlyOnceReceiver(RED, node, (def as { wires?: unknown }).wires) : undefined;
      cfg.watermarks = receiver?.watermarks;
      const completion = receiver?.completion;
      stopCompletion = () => receiver?.stop();
      const opened = openTransport(RED, transport, cfg, def.sourceStage, {
        acknowledges: completion !== undefined,
        message: (m, key, done) => {
          const msg = toNodeMessage(m, key);
          if (done) completion!.track(msg._msgid as string, done);
          node.send(msg);
        },
        status: (s) => status.show(s),
        problem: (e) => problems.report(e),
        backpressure: (on, queued) => {
          if (on) node.warn(`backpressure: ${queued} messages wait for the peers (high-water mark ${def.hwm ?? 'default'}); input messages are held in order`);
          status.backpressure(on);
        },
      });
      stream = opened.stream;
      if (opened.why) node.log(`transport auto: ${opened.transport} — ${opened.why}`);
      linger = lingerMs(def);
      const live = stream;
      unregisterStats = registerStats(node.id, { pattern, peers: () => live.peers, stats: () => live.stats() });
      stopRates = watchRates(() => live.stats(), (r) => {
        rates = r;
        status.refresh();
      });
    } catch (e) {
      stopCompletion();
      const text = e instanceof ConfigError || e instanceof StreamError ? e.message : String(e);
      node.status({ fill: 'red', shape: 'ring', text });
      node.error(`configuration: ${text}`);
      return;
    }

    function toNodeMessage(m: WireMessage, key: Buffer | undefined): NodeMessage {
      // Without metadata the decoded object ({payload}) becomes the message: one allocation less per message.
      const msg = (m.meta ? { ...m.meta, payload: m.payload } : m) as Msg;
      msg._msgid = nextMsgId();
      if (pattern === 'sub' && key) msg.topic = key.toString('utf8');
      if (pattern === 'router') msg.identity = key;
      return msg;
    }

    if (SENDS[pattern]) {
      node.on('input', (msgIn: NodeMessageInFlow, _send, done) => {
        const msg = msgIn as Msg;
        let key: Buffer | undefined;
        if (pattern === 'pub') key = toKey(fixedTopic ?? msg.topic ?? '');
        else if (pattern === 'router') {
          key = toKey(msg.identity);
          if (!key || key.length === 0) {
            done(new Error('msg.identity is missing: a router reply goes to the identity that came with the request it answers'));
            return;
          }
        }
        // done(undefined) completes the message, done(err) hands it to Catch nodes with the error.
        stream.send(msg.payload, key, wholeMsg ? metaOf(msg) : undefined, done as (err?: Error) => void);
      });
    } else if (!RECEIVES[pattern]) {
      throw new Error(`pattern ${pattern} neither sends nor receives`);
    }

    node.on('close', (_removed: boolean, done: () => void) => {
      stream
        .close(linger)
        .then((undelivered) => {
          if (undelivered > 0) node.warn(`closed with ${undelivered} messages undelivered: no peer took them within the linger time of ${linger} ms`);
        })
        .catch((e) => node.error(`close: ${String(e)}`))
        .finally(() => {
          stopRates();
          stopCompletion();
          unregisterStats();
          problems.stop();
          node.status({});
          done();
        });
    });
  }
  RED.nodes.registerType(`spawn-${pattern}`, PatternNode as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
}
