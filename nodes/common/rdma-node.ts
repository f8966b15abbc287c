import type { Node, NodeAPI, NodeMessage, NodeMessageInFlow } from 'node-red';
import { WireMessage } from '../../native/codec';
import { parseEndpoint } from '../../native/endpoint';
import { StreamError } from '../../native/errors';
import { Provider } from '../../native/fabric/endpoint';
import { FabricError } from '../../native/fabric/lib';
import { FabricStream, openFabricIn, openFabricOut } from '../../native/fabric/stream';
import { openZmqStream, StreamStatus, ZmqStream } from '../../native/zmq';
import { openReliableFabricIn, openReliableFabricOut } from '../../native/delivery/fabric-links';
import { Completion } from './completion';
import { ConfigError, lingerMs, PatternNodeDef, streamConfig } from './config';
import { metaOf, nextMsgId } from './pattern-node';
import { ProblemReporter } from './problems';
import { rdmaSourceEndpoints } from './rdma-source';
import { exactlyOnceReceiver } from './receiver-setup';
import { registerStats } from './stats';
import { StatusView } from './status-view';

/**
 * The RDMA nodes: "rdma out" (spawn-rdma-out, the output side: listens on its port and sends
 * round-robin over the efa in nodes connected, like push) and "efa in" (spawn-efa-in, the input
 * side: connects to the rdma out of a source stage, like pull). The transport is a libfabric
 * stream (native/fabric/stream.ts) on the chosen provider; with provider "auto" it is efa, and
 * where there is no EFA device (or no libfabric) the node says so and runs as ZeroMQ push/pull over
 * TCP on the same port instead, as the streaming guide's troubleshooting section advises.
 * Delivery `exactly-once` runs the delivery engine over the fabric (native/delivery/fabric-links.ts),
 * and over ZeroMQ's exactly-once links after the fallback; both ends must use the same mode.
 */

export type RdmaSide = 'out' | 'in';
export type ProviderChoice = 'auto' | Provider;
export const PROVIDERS: readonly ProviderChoice[] = ['auto', 'efa', 'tcp', 'shm'];
/** The guide's port for RDMA streams, and the nodes' default. */
export const DEFAULT_RDMA_PORT = 7500;

export interface RdmaNodeDef extends PatternNodeDef {
  provider?: ProviderChoice | '';
}

type Msg = NodeMessage & Record<string, unknown>;
type Stream = FabricStream | ZmqStream;

/** What the node needs from its stored properties; throws ConfigError naming the field. */
export function rdmaConfig(side: RdmaSide, def: RdmaNodeDef, fromSource: string[] = [], env: NodeJS.ProcessEnv = process.env) {
  const provider = (def.provider || 'auto') as ProviderChoice;
  if (!PROVIDERS.includes(provider)) throw new ConfigError(`provider "${provider}" must be one of ${PROVIDERS.join(', ')}`);
  const withPort = { ...def, port: def.port === undefined || def.port === '' ? DEFAULT_RDMA_PORT : def.port };
  // The ZeroMQ configuration checks every shared field, and is the fallback's configuration.
  const zmq = streamConfig(side === 'out' ? 'push' : 'pull', withPort, fromSource, env);
  if (side === 'out' && zmq.bind.length !== 1) throw new ConfigError('connection: rdma out listens on its port; "connect" is not supported');
  if (side === 'in' && zmq.connect.length === 0) throw new ConfigError('connection: efa in connects to an rdma out; "bind" is not supported');
  const bind = zmq.bind.length ? parseEndpoint(zmq.bind[0], 'bind') : undefined;
  const connect = zmq.connect.map((e) => parseEndpoint(e, 'connect'));
  return { provider, zmq, bind, connect };
}

/** "libfabric is not installed" and "provider efa not available": where auto falls back. */
function fabricUnavailable(e: unknown): e is FabricError {
  return e instanceof FabricError && (e.fn === 'dlopen' || e.fn === 'fi_getinfo' || e.fn === 'dlvsym');
}

export function registerRdmaNode(RED: NodeAPI, side: RdmaSide): void {
  const kind = side === 'out' ? 'rdma out' : 'efa in';
  function RdmaNode(this: Node, def: RdmaNodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const problems = new ProblemReporter(node, RED.events);
    const wholeMsg = def.wholeMsg === true;
    const status = new StatusView(node);
    const showStatus = (s: StreamStatus) => status.show(s);
    let stream: Stream;
    let linger = 0;
    let unregisterStats = () => undefined as void;

    // Exactly-once receivers: what they finished outlives a crash, and they acknowledge when the
    // wired nodes are done (./receiver-setup.ts). Set once the configuration is read.
    let stopReceiver = () => undefined as void;
    let completion: Completion | undefined;
    const handlers = {
      acknowledges: false,
      message: (m: WireMessage, done?: () => void) => {
        const msg = toNodeMessage(m);
        if (done) completion!.track(msg._msgid as string, done);
        node.send(msg);
      },
      problem: (e: StreamError) => problems.report(e),
      backpressure: (on: boolean, queued: number) => {
        if (on) node.warn(`backpressure: ${queued} messages wait for the receivers; input messages are held in order`);
        status.backpressure(on);
      },
    };

    try {
      let fromSource: string[] = [];
      if (side === 'in' && def.sourceStage) {
        const src = rdmaSourceEndpoints(RED, def.sourceStage);
        fromSource = src.endpoints;
        node.log(`source stage "${def.sourceStage}": ${src.endpoints.join(', ')} (from ${src.from})`);
      }
      const cfg = rdmaConfig(side, def, fromSource);
      linger = lingerMs(def);
      const exactlyOnce = cfg.zmq.delivery === 'exactly-once';
      if (exactlyOnce && side === 'in') {
        // Over the fabric and the ZeroMQ fallback alike.
        const receiver = exactlyOnceReceiver(RED, node, (def as { wires?: unknown }).wires);
        cfg.zmq.watermarks = receiver.watermarks;
        completion = receiver.completion;
        handlers.acknowledges = completion !== undefined;
        stopReceiver = () => receiver.stop();
      }
      const open = (provider: Provider, status: (s: StreamStatus) => void): FabricStream => {
        const common = { provider, format: cfg.zmq.format, maxMessageSize: cfg.zmq.maxMessageSize };
        if (side === 'out') {
          const out = { ...common, host: cfg.bind!.host, port: cfg.bind!.port, highWater: cfg.zmq.highWater, queueLimit: cfg.zmq.queueLimit, batch: cfg.zmq.batch, noPeerMs: cfg.zmq.noPeerMs };
          return exactlyOnce ? openReliableFabricOut(out, { ...handlers, status }) : openFabricOut(out, { ...handlers, status });
        }
        const inn = { ...common, connect: cfg.connect, reconnectMs: cfg.zmq.reconnectMs };
        return exactlyOnce
          ? openReliableFabricIn(inn, { ...handlers, status }, { deadMs: cfg.zmq.noPeerMs, maxUndone: Math.min(cfg.zmq.queueLimit / 4, 16_384), watermarks: cfg.zmq.watermarks })
          : openFabricIn(inn, { ...handlers, status });
      };
      if (cfg.provider !== 'auto') {
        stream = open(cfg.provider, showStatus);
      } else {
        try {
          stream = open('efa', showStatus);
        } catch (e) {
          if (!fabricUnavailable(e)) throw e;
          const where = side === 'out' ? `listening on port ${cfg.bind!.port}` : `connecting to ${cfg.zmq.connect.join(', ')}`;
          node.warn(`${e.message}; provider auto falls back to ZeroMQ over TCP (${side === 'out' ? 'push' : 'pull'}, ${where}): slower than RDMA, same messages`);
          stream = openZmqStream(cfg.zmq, {
            ...handlers,
            // exactly-once (cfg.zmq.delivery): ZeroMQ's exactly-once links, same acknowledgements.
            message: (m, _key, done) => handlers.message(m, done),
            status: (s) => showStatus({ ...s, text: `zmq fallback: ${s.text}` }),
          });
        }
      }
      const live = stream;
      unregisterStats = registerStats(node.id, { pattern: kind, peers: () => live.peers, stats: () => live.stats() });
    } catch (e) {
      stopReceiver();
      const text = e instanceof ConfigError || e instanceof StreamError || e instanceof FabricError ? e.message : String(e);
      node.status({ fill: 'red', shape: 'ring', text });
      node.error(e instanceof ConfigError ? `configuration: ${text}` : text);
      return;
    }

    function toNodeMessage(m: WireMessage): NodeMessage {
      const msg = (m.meta ? { ...m.meta, payload: m.payload } : m) as Msg;
      msg._msgid = nextMsgId();
      return msg;
    }

    if (side === 'out') {
      node.on('input', (msgIn: NodeMessageInFlow, _send, done) => {
        const msg = msgIn as Msg;
        stream.send(msg.payload, undefined, wholeMsg ? metaOf(msg) : undefined, done as (err?: Error) => void);
      });
    }

    node.on('close', (_removed: boolean, done: () => void) => {
      stream
        .close(linger)
        .then((undelivered) => {
          if (undelivered > 0) node.warn(`closed with ${undelivered} messages undelivered: no receiver took them within the linger time of ${linger} ms`);
        })
        .catch((e) => node.error(`close: ${String(e)}`))
        .finally(() => {
          stopReceiver();
          unregisterStats();
          problems.stop();
          node.status({});
          done();
        });
    });
  }
  RED.nodes.registerType(side === 'out' ? 'spawn-rdma-out' : 'spawn-efa-in', RdmaNode as unknown as Parameters<NodeAPI['nodes']['registerType']>[1]);
}
