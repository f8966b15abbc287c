import * as dgram from 'dgram';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ensureCa, issueCertificate, writeIdentity } from '../../native/quic/pki';
import type { QuicStreamConfig } from '../../native/quic/stream';
import type { Pattern } from '../../native/zmq';
import { seededRandom } from './random';

/** A loopback UDP port that nothing is bound to right now (the kernel picks it). */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

/** A new CA in a temporary directory and `n` runtime certificate directories signed by it. */
export function quicIdentities(n: number, label = 'ca'): string[] {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `spawn-red-quic-${label}-`));
  const ca = ensureCa(path.join(root, 'ca'), `test ${label}`);
  return Array.from({ length: n }, (_, i) => {
    const dir = path.join(root, `runtime-${i}`);
    writeIdentity(dir, ca.certPem, issueCertificate(ca, `runtime ${i}`));
    return dir;
  });
}

export interface LossyRelay {
  port: number;
  forwarded: number;
  dropped: number;
  delayed: number;
  /** Drop every datagram, both ways, for `ms`: the connection breaks (both sides hear nothing). */
  blackout(ms: number): void;
  close(): Promise<void>;
}

/**
 * A UDP relay on loopback between one client and one server that drops a share of the datagrams
 * and delays another share (reordering them), in both directions. Decisions come from a seeded
 * generator, so a failing run can be repeated.
 */
export function startLossyRelay(serverPort: number, opts: { drop: number; delay: number; maxDelayMs: number; seed?: number }): Promise<LossyRelay> {
  const random = seededRandom(opts.seed);
  const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
  const timers = new Set<NodeJS.Timeout>();
  let client: { port: number; address: string } | undefined;
  let darkUntil = 0;
  const relay: LossyRelay = {
    port: 0,
    forwarded: 0,
    dropped: 0,
    delayed: 0,
    blackout: (ms) => void (darkUntil = Date.now() + ms),
    close: () =>
      new Promise<void>((r) => {
        for (const t of timers) clearTimeout(t);
        sock.close(() => r());
      }),
  };
  sock.on('message', (msg, rinfo) => {
    const fromServer = rinfo.port === serverPort;
    if (!fromServer) client = { port: rinfo.port, address: rinfo.address };
    const to = fromServer ? client : { port: serverPort, address: '127.0.0.1' };
    if (!to) return;
    if (Date.now() < darkUntil) {
      relay.dropped++;
      return;
    }
    const r = random();
    if (r < opts.drop) {
      relay.dropped++;
      return;
    }
    const forward = () => {
      relay.forwarded++;
      sock.send(msg, to.port, to.address);
    };
    if (r < opts.drop + opts.delay) {
      relay.delayed++;
      const t = setTimeout(() => {
        timers.delete(t);
        forward();
      }, 1 + random() * opts.maxDelayMs);
      timers.add(t);
    } else forward();
  });
  return new Promise((resolve) =>
    sock.bind(0, '127.0.0.1', () => {
      relay.port = sock.address().port;
      resolve(relay);
    }),
  );
}

/**
 * Peer files of a two-stage pipeline (producer on 127.0.0.2, consumer on 127.0.0.3) whose stages are
 * in different availability zones, where transport `auto` chooses QUIC. Returns each stage's file.
 */
export function twoZonePeerFiles(dir: string, pipelineId: string): { producer: string; consumer: string } {
  const peer = (stage: string, si: number, ip: string, zone: string) => ({
    stage_id: stage,
    stage_index: si,
    instance_id: `i-${stage}`,
    private_ip: ip,
    dns_name: `${stage}-0.test`,
    state: 'running',
    index: 0,
    availability_zone: zone,
    placement_group: 'spawn-red-test',
  });
  const all = { producer: [peer('producer', 0, '127.0.0.2', 'us-east-1a')], consumer: [peer('consumer', 1, '127.0.0.3', 'us-east-1b')] };
  const write = (self: 'producer' | 'consumer') => {
    const f = path.join(dir, `${self}.json`);
    fs.writeFileSync(
      f,
      JSON.stringify({
        pipeline_id: pipelineId,
        stage_id: self,
        stage_index: all[self][0].stage_index,
        instance_index: 0,
        stage_peers: all[self],
        upstream_stages: self === 'consumer' ? { producer: all.producer } : {},
        downstream_stages: self === 'producer' ? { consumer: all.consumer } : {},
        all_stages: all,
      }),
    );
    return f;
  };
  return { producer: write('producer'), consumer: write('consumer') };
}

/** A QUIC stream's configuration for in-process tests: 127.0.0.1, spawn format, batching, `extra` on top. */
export function quicTestConfig(pattern: Pattern, tlsDir: string, where: { bind?: number; connect?: number[] }, extra: Partial<QuicStreamConfig> = {}): QuicStreamConfig {
  return {
    pattern,
    format: 'spawn',
    bind: where.bind ? [`quic://127.0.0.1:${where.bind}`] : [],
    connect: (where.connect ?? []).map((p) => `quic://127.0.0.1:${p}`),
    highWater: 1000,
    queueLimit: 100_000,
    maxMessageSize: 0,
    reconnectMs: 50,
    batch: true,
    tlsDir,
    noPeerMs: 60_000,
    ...extra,
  };
}
