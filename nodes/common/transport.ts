import * as os from 'os';
import * as path from 'path';
import type { NodeAPI } from 'node-red';
import { loadPeerFile, peerFilePath, peersOf, PeerFile } from '../../native/peers';
import { openQuicStream } from '../../native/quic/stream';
import { selectTransport, Selection } from '../../native/transport-select';
import { openZmqStream, Pattern, StreamStatus, ZmqStream, ZmqStreamConfig, ZmqStreamHandlers } from '../../native/zmq';
import { ConfigError } from './config';

/**
 * The transport under a pattern node: `tcp` (ZeroMQ, the default), `quic`, or `auto` (chosen per
 * edge from the peer-discovery file, see native/transport-select.ts).
 *
 * With `auto`, an input node (it connects) chooses for its one edge, to its source stage. An
 * output node (it binds) may feed several stages whose edges choose differently; it then binds
 * both: ZeroMQ on the TCP port and QUIC on the UDP port of the same number, and sends to whichever
 * peers come. Both sides of an edge read the same file, so they agree.
 */

export type TransportOption = 'tcp' | 'quic' | 'auto';

export interface OpenedTransport {
  stream: ZmqStream;
  /** What runs: "tcp", "quic" or "tcp+quic". */
  transport: string;
  /** Why (auto), for the log and the status. */
  why?: string;
}

/** Where this runtime's QUIC certificates are: the launcher's SPAWN_QUIC_DIR, else the Node-RED user directory. */
export function quicDir(RED: NodeAPI | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (env.SPAWN_QUIC_DIR) return env.SPAWN_QUIC_DIR;
  const userDir = (RED?.settings as { userDir?: string } | undefined)?.userDir;
  return path.join(userDir || path.join(os.homedir(), '.node-red'), 'spawn-red-quic');
}

export function transportOption(value: unknown): TransportOption {
  if (value === undefined || value === null || value === '') return 'tcp';
  if (value === 'tcp' || value === 'quic' || value === 'auto') return value;
  throw new ConfigError(`transport "${String(value)}" must be "tcp", "quic" or "auto"`);
}

/** `auto` for one node: the selections of its edges, from the peer file (none: one host, TCP). */
export function autoSelections(file: PeerFile | undefined, binds: boolean, sourceStage: string | undefined): Selection[] {
  if (!file) return [{ transport: 'tcp', why: 'no peer file (one host)' }];
  const mine = peersOf(file, file.stage_id);
  if (!binds) {
    if (!sourceStage) return [{ transport: 'tcp', why: 'no source stage named: TCP' }];
    return [selectTransport(mine, peersOf(file, sourceStage))];
  }
  const downstream = Object.keys(file.downstream_stages);
  if (downstream.length === 0) return [{ transport: 'tcp', why: 'no downstream stage in the peer file' }];
  return downstream.map((s) => {
    const sel = selectTransport(mine, peersOf(file, s));
    return { ...sel, why: `${s}: ${sel.why}` };
  });
}

/** RDMA is carried by the rdma out / efa in nodes; a pattern node that the table sends to RDMA uses TCP. */
function forPatternNode(sel: Selection): Selection {
  return sel.transport === 'rdma' ? { transport: 'tcp', why: `${sel.why}: RDMA (the rdma out / efa in nodes carry it); this pattern node uses TCP` } : sel;
}

export function openTransport(RED: NodeAPI, option: TransportOption, cfg: ZmqStreamConfig, sourceStage: string | undefined, handlers: ZmqStreamHandlers): OpenedTransport {
  if (option === 'tcp') return { stream: openZmqStream(cfg, handlers), transport: 'tcp' };
  const tlsDir = quicDir(RED);
  if (option === 'quic') return { stream: openQuicStream({ ...cfg, tlsDir }, handlers), transport: 'quic' };
  const file = peerFilePath();
  const sels = autoSelections(file ? loadPeerFile(file) : undefined, cfg.bind.length > 0, sourceStage).map(forPatternNode);
  const kinds = new Set(sels.map((s) => s.transport));
  const why = sels.map((s) => `${s.transport} (${s.why})`).join('; ');
  const prefixed = (label: string): ZmqStreamHandlers => ({ ...handlers, status: (s) => handlers.status({ ...s, text: `auto→${label}: ${s.text}` }) });
  if (kinds.size === 1 && kinds.has('tcp')) return { stream: openZmqStream(cfg, prefixed('tcp')), transport: 'tcp', why };
  if (kinds.size === 1) return { stream: openQuicStream({ ...cfg, tlsDir }, prefixed('quic')), transport: 'quic', why };
  return { stream: openDual(cfg, tlsDir, prefixed('tcp+quic')), transport: 'tcp+quic', why };
}

/** One pattern bound on both transports: messages go to whichever has peers (alternating when both do). */
function openDual(cfg: ZmqStreamConfig, tlsDir: string, handlers: ZmqStreamHandlers): ZmqStream {
  const statuses: StreamStatus[] = [
    { state: 'connecting', peers: 0, text: 'starting' },
    { state: 'connecting', peers: 0, text: 'starting' },
  ];
  const merged = (i: number) => ({
    ...handlers,
    status: (s: StreamStatus) => {
      statuses[i] = s;
      const [t, q] = statuses;
      const state = t.state === 'error' || q.state === 'error' ? 'error' : t.peers + q.peers > 0 ? 'ready' : 'connecting';
      handlers.status({ state, peers: t.peers + q.peers, text: `tcp ${t.text} | ${q.text}` });
    },
  });
  const tcp = openZmqStream(cfg, merged(0));
  const quic = openQuicStream({ ...cfg, tlsDir }, merged(1));
  const both = [tcp, quic];
  let turn = 0;
  const pattern: Pattern = cfg.pattern;
  return {
    send(payload, key, meta, cb) {
      if (pattern === 'pub') {
        // Each side fans out to its own subscribers; the message is done when both took it.
        let left = 2;
        let failure: Parameters<typeof cb>[0];
        const one = (e?: Parameters<typeof cb>[0]) => {
          failure = failure ?? e;
          if (--left === 0) cb(failure);
        };
        tcp.send(payload, key, meta, one);
        quic.send(payload, key, meta, one);
        return;
      }
      if (pattern === 'router') return (quic.hasIdentity(key) ? quic : tcp).send(payload, key, meta, cb);
      const live = both.filter((s) => s.peers > 0);
      // With no peer yet, messages wait on QUIC (it reaches every zone).
      const pick = live.length === 0 ? quic : live[turn++ % live.length];
      pick.send(payload, key, meta, cb);
    },
    get peers() {
      return tcp.peers + quic.peers;
    },
    stats() {
      const a = tcp.stats();
      const b = quic.stats();
      return {
        sentMessages: a.sentMessages + b.sentMessages,
        sentBytes: a.sentBytes + b.sentBytes,
        receivedMessages: a.receivedMessages + b.receivedMessages,
        receivedBytes: a.receivedBytes + b.receivedBytes,
        queued: a.queued + b.queued,
      };
    },
    async close(lingerMs) {
      const [a, b] = await Promise.all([tcp.close(lingerMs), quic.close(lingerMs)]);
      return a + b;
    },
  };
}
