import type { NodeDef } from 'node-red';
import * as path from 'path';
import { CurveKeyError, pipelineKeys } from '../../native/curve';
import { splitList } from '../../native/endpoint';
import { Format } from '../../native/sender';
import { Delivery, Pattern, ZmqStreamConfig } from '../../native/zmq';

/**
 * The properties a pattern node stores in the flow, as the editor writes them (numbers may arrive
 * as strings), and their translation into a transport configuration.
 */
export interface PatternNodeDef extends NodeDef {
  format?: Format;
  wholeMsg?: boolean;
  batch?: boolean;
  /** `bind` or `connect`; by default output-side nodes bind and input-side nodes connect. */
  connection?: 'bind' | 'connect' | '';
  /** Bind address (`*` for every interface) and port. */
  addr?: string;
  port?: number | string;
  /** Endpoints to connect to: `tcp://host:port`, separated by commas, spaces or new lines. */
  endpoints?: string;
  /** Upstream stage whose instances to connect to (resolved by the launcher; see issue 3). */
  sourceStage?: string;
  hwm?: number | string;
  queueLimit?: number | string;
  linger?: number | string;
  maxMessageSize?: number | string;
  reconnect?: number | string;
  /** Milliseconds without a peer, while messages wait, before ENOPEER is reported. */
  peerTimeout?: number | string;
  /** pub: `msg` takes msg.topic, `fixed` sends `topic` always. */
  topicMode?: 'msg' | 'fixed';
  /** pub: the fixed topic; sub: the subscribed prefixes (a list). */
  topic?: string;
  topics?: string;
  /** dealer: routing id presented to routers. */
  identity?: string;
  /** `tcp` (ZeroMQ, default), `quic`, or `auto` (see transport.ts). */
  transport?: 'tcp' | 'quic' | 'auto' | '';
  /** push/pull/router/dealer: `at-most-once` (default) or `exactly-once`. */
  delivery?: Delivery | '';
  /** `curve`: CurveZMQ with the pipeline's keys (native/curve.ts); default none. */
  encryption?: 'none' | 'curve' | '';
}

/** The key file of a local run (no launcher): in the Node-RED user dir, made on first use. */
export const LOCAL_CURVE_FILE = 'spawn-red-curve.json';

function curveOf(def: PatternNodeDef, env: NodeJS.ProcessEnv, userDir: string | undefined) {
  const e = def.encryption || 'none';
  if (e !== 'none' && e !== 'curve') throw new ConfigError(`encryption "${String(e)}" must be "none" or "curve"`);
  if (e === 'none') return undefined;
  try {
    return pipelineKeys(env, userDir ? path.join(userDir, LOCAL_CURVE_FILE) : undefined);
  } catch (err) {
    throw new ConfigError(`encryption: ${(err as CurveKeyError).message}`);
  }
}

/**
 * Patterns (and the RDMA nodes, which configure as push and pull) with a delivery option: pub/sub is
 * at-most-once by design (see the README). The editor keeps the same table (editor/editor.html).
 */
export const HAS_DELIVERY: Record<Pattern | 'rdma out' | 'efa in', boolean> = { push: true, pull: true, router: true, dealer: true, pub: false, sub: false, 'rdma out': true, 'efa in': true };

function deliveryOf(pattern: Pattern, def: PatternNodeDef): Delivery {
  const d = def.delivery || 'at-most-once';
  if (d !== 'at-most-once' && d !== 'exactly-once') throw new ConfigError(`delivery "${String(d)}" must be "at-most-once" or "exactly-once"`);
  if (d === 'exactly-once' && !HAS_DELIVERY[pattern]) {
    throw new ConfigError(`delivery "exactly-once" is not available on ${pattern}: pub/sub delivers at most once (use push/pull or router/dealer)`);
  }
  return d;
}

/** Output-side patterns bind by default: they are the stage's data_output. */
export const BINDS_BY_DEFAULT: Record<Pattern, boolean> = {
  push: true,
  pub: true,
  router: true,
  pull: false,
  sub: false,
  dealer: false,
};

export const DEFAULTS = {
  format: 'spawn' as Format,
  port: 5555,
  addr: '*',
  hwm: 1000,
  queueLimit: 100_000,
  linger: 5000,
  maxMessageSize: 256 * 1024 * 1024,
  reconnect: 100,
  peerTimeout: 5000,
};

export class ConfigError extends Error {}

function int(value: unknown, fallback: number, field: string, min: number, max: number): number {
  if (value === undefined || value === null || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${field} "${String(value)}" must be a whole number from ${min} to ${max}`);
  }
  return n;
}

export function bindsFor(pattern: Pattern, def: PatternNodeDef): boolean {
  if (def.connection === 'bind') return true;
  if (def.connection === 'connect') return false;
  return BINDS_BY_DEFAULT[pattern];
}

/**
 * Translate a node's stored properties; throws ConfigError naming the field at fault.
 * `fromSource` are the endpoints resolved from the node's source stage, if it names one.
 * A bind to `*` becomes a bind to SPAWN_BIND_ADDR when the launcher sets it (local instances each
 * have their own loopback address, so instances of one stage can share a port number).
 */
export function streamConfig(
  pattern: Pattern,
  def: PatternNodeDef,
  fromSource: string[] = [],
  env: NodeJS.ProcessEnv = process.env,
  userDir?: string,
): ZmqStreamConfig {
  const format = def.format || DEFAULTS.format;
  if (format !== 'spawn' && format !== 'raw') throw new ConfigError(`format "${format}" must be "spawn" or "raw"`);
  const binds = bindsFor(pattern, def);
  const bind: string[] = [];
  const connect: string[] = [];
  if (binds) {
    const port = int(def.port, DEFAULTS.port, 'port', 1, 65535);
    let addr = (def.addr || DEFAULTS.addr).trim();
    if (addr === '*' && env.SPAWN_BIND_ADDR) addr = env.SPAWN_BIND_ADDR;
    bind.push(`tcp://${addr}:${port}`);
  } else {
    connect.push(...fromSource, ...splitList(def.endpoints));
    if (connect.length === 0) {
      throw new ConfigError('endpoints: pick a source stage, or give an endpoint to connect to such as tcp://127.0.0.1:5555');
    }
  }
  const hwm = int(def.hwm, DEFAULTS.hwm, 'high-water mark', 1, 10_000_000);
  return {
    pattern,
    format,
    bind,
    connect,
    highWater: hwm,
    queueLimit: Math.max(hwm, int(def.queueLimit, DEFAULTS.queueLimit, 'queue limit', 1, 100_000_000)),
    maxMessageSize: int(def.maxMessageSize, DEFAULTS.maxMessageSize, 'maximum message size', 0, 2 ** 31 - 1),
    reconnectMs: int(def.reconnect, DEFAULTS.reconnect, 'reconnect interval', 1, 3_600_000),
    batch: def.batch !== false,
    topics: pattern === 'sub' ? splitList(def.topics) : undefined,
    identity: pattern === 'dealer' && def.identity ? def.identity : undefined,
    noPeerMs: int(def.peerTimeout, DEFAULTS.peerTimeout, 'peer timeout', 1, 3_600_000),
    delivery: deliveryOf(pattern, def),
    curve: curveOf(def, env, userDir),
  };
}

export function lingerMs(def: PatternNodeDef): number {
  return int(def.linger, DEFAULTS.linger, 'linger', 0, 600_000);
}

