import { strict as assert } from 'assert';
import * as crypto from 'crypto';
import * as dgram from 'dgram';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import * as zmq from 'zeromq';
import { encodeHeader, Kind } from '../../native/delivery/protocol';
import { QuicEndpoint } from '../../native/quic/engine';
import { encodeData, encodeRecord, Kind as RecordKind } from '../../native/quic/framing';
import { loadIdentity } from '../../native/quic/pki';
import { startChildRuntime, tabFlow } from '../support/child-runtime';
import { hasLibfabric, LIBFABRIC_INSTALL } from '../support/libfabric';
import { requireSystem } from '../support/system';
import { freePort } from '../support/ports';
import { freeUdpPort, quicIdentities } from '../support/quic';
import { waitUntil } from './support';

/**
 * Random bytes, truncated and oversize frames, wrong magic and version at every listening port of
 * every transport of a runtime that is busy serving good peers: it stays up, reports, and the good
 * streams arrive complete and in order.
 *
 * LISTENERS names each kind of listening port and the attacks that fit it. QUIC listeners get
 * random and truncated datagrams, a peer with a certificate of another CA, bad greetings, and,
 * inside a valid stream, records and frames with a wrong magic or version or over the limit. The
 * RDMA transport adds its kinds here (an efa listener in the flow below, and attacks that speak to it).
 */

type Attack = (port: number) => Promise<void>;

const MAX_MESSAGE = 1024 * 1024;

/**
 * Raw TCP: connect, write, close. The victim may keep a connection open after garbage (libzmq
 * takes some random bytes for the start of an old ZMTP greeting and waits for the rest): the
 * attacker then hangs up after a while, instead of waiting for ever (the test used to, now and then).
 */
function tcp(bytes: Buffer): Attack {
  return (port) =>
    new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.end(bytes));
      const t = setTimeout(() => s.destroy(), 2000);
      s.on('error', () => resolve());
      s.on('close', () => (clearTimeout(t), resolve()));
    });
}

/** The first bytes of a ZMTP 3 greeting, then nothing. */
const TRUNCATED_GREETING = Buffer.from([0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3]);

/** A real ZeroMQ socket of `type` that sends `messages`, then goes away. */
function zmqPeer(type: 'push' | 'dealer', messages: Buffer[][]): Attack {
  return async (port) => {
    const s = type === 'push' ? new zmq.Push({ linger: 200 }) : new zmq.Dealer({ linger: 200 });
    s.connect(`tcp://127.0.0.1:${port}`);
    for (const m of messages) await Promise.race([s.send(m), new Promise((r) => setTimeout(r, 500))]);
    await new Promise((r) => setTimeout(r, 300)); // let libzmq write what it holds before closing
    s.close();
  };
}

const spawnFrame = (magic: string, version: number) => {
  const b = Buffer.alloc(8 + 9 + 4);
  b.write(magic, 0, 'latin1');
  b[2] = version;
  b.writeUInt32LE(1, 4);
  b[8] = 0; // Buffer
  b.writeUInt32LE(4, 13);
  return b;
};
const session = crypto.randomBytes(8);
const dataHeader = (magic = 'SD', version = 1) => {
  const h = encodeHeader(Kind.Data, session, 0, 0, 1);
  h.write(magic, 0, 'latin1');
  h[2] = version;
  return h;
};

/**
 * A client of an rdma out's side channel (native/fabric/channel.ts: JSON lines): writes `lines`,
 * then, if `after` is given and the rdma out welcomed it, whatever `after` returns; holds the
 * connection `holdMs`, then closes.
 */
function sideChannel(lines: Array<object | string>, after?: () => Array<object | string>, holdMs = 100): Attack {
  const text = (l: object | string) => (typeof l === 'string' ? l : JSON.stringify(l) + '\n');
  return (port) =>
    new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        for (const l of lines) s.write(text(l));
        setTimeout(() => s.end(), holdMs);
      });
      let got = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        if (!after || !(got += d).includes('"welcome"')) return;
        for (const l of after()) s.write(text(l));
        after = undefined;
      });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
}

/** Whether something accepts connections on the port (connects, then closes at once). */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}

/** A hello as an efa in sends it; `extra` changes fields. */
const efaHello = (provider: string, extra: Record<string, unknown> = {}) => ({
  t: 'hello', v: 1, address: Buffer.alloc(16).toString('base64'), provider, id: 7, chunk: 65536, credits: 16, ...extra,
});
/** A tcp fabric address (sockaddr_in) that nobody answers: 127.0.0.1 at a port nobody listens on. */
function deadTcpAddress(port: number): string {
  const a = Buffer.alloc(16);
  a.writeUInt16LE(2, 0); // AF_INET
  a.writeUInt16BE(port, 2);
  Buffer.from([127, 0, 0, 1]).copy(a, 4);
  return a.toString('base64');
}
/**
 * Called when the bogus receiver below has been welcomed: the exactly-once stream starts then, so that
 * the bogus receiver surely gets a share to fail over (a stream already finished would give it none).
 */
const rdmaHooks = { bogusWelcomed: () => undefined as void };
const framesLine = (...frames: Buffer[]) => ({ t: 'frames', f: frames.map((b) => b.toString('base64')) });

/** Not the side channel's protocol at all, or an efa in the rdma out must refuse before it takes a share. */
const rdmaCommon = (provider: string, otherDelivery: string): Attack[] => [
  ...COMMON.slice(0, 1),
  sideChannel(['{"t":"hello","v":1,"addr']), // truncated, then closed
  sideChannel(['[1,2]\n']),
  sideChannel(['"just a string"\n']),
  sideChannel(['not json at all\n']),
  tcp(Buffer.alloc(70_000, 0x41)), // a line longer than any message
  sideChannel([efaHello(provider, { v: 9 })]),
  sideChannel([efaHello(provider === 'shm' ? 'tcp;ofi_rxm' : 'shm')]),
  sideChannel([efaHello(provider, { delivery: otherDelivery })]),
];

/** QUIC attacks need certificates (made in before()): the victim's, another of its CA, one of another CA. */
const certs = { victim: '', peer: '', foreign: '' };

/** Datagrams from a plain UDP socket: no QUIC connection comes of them, and they must harm none. */
function udp(datagrams: Buffer[]): Attack {
  return (port) =>
    new Promise((resolve) => {
      const s = dgram.createSocket('udp4');
      let i = 0;
      const next = () => {
        if (i === datagrams.length) return s.close(() => resolve());
        s.send(datagrams[i++], port, '127.0.0.1', next);
      };
      next();
    });
}

/** A real client Initial packet (a QUIC client's first datagram), caught on a local socket. */
async function realInitial(tlsDir: string): Promise<Buffer> {
  const catcher = dgram.createSocket('udp4');
  await new Promise<void>((r) => catcher.bind(0, '127.0.0.1', () => r()));
  const first = new Promise<Buffer>((r) => catcher.once('message', (m) => r(m)));
  const ep = new QuicEndpoint({ tls: loadIdentity(tlsDir), earlyData: false }, 'udp4', true);
  await ep.bind('127.0.0.1', 0, false);
  ep.connect('127.0.0.1', catcher.address().port);
  const initial = await first;
  await ep.close();
  await new Promise<void>((r) => catcher.close(() => r()));
  return initial;
}

/** Random datagrams of every size, some dressed as long-header Initial packets, and a real Initial cut short or corrupted. */
function quicDatagrams(who: keyof typeof certs): Attack {
  return async (port) => {
    const initial = await realInitial(certs[who]);
    const corrupt = Buffer.from(initial);
    for (let i = 40; i < corrupt.length; i += 7) corrupt[i] ^= 0xa5;
    const random = Array.from({ length: 60 }, (_, i) => crypto.randomBytes(1 + ((i * 97) % 1500)));
    const initialLike = Array.from({ length: 20 }, () => {
      const b = crypto.randomBytes(1200 + Math.floor(Math.random() * 200));
      b[0] = 0xc0 | (b[0] & 0x0f);
      b.writeUInt32BE(1, 1); // QUIC v1
      return b;
    });
    const wrongVersion = Buffer.from(initial);
    wrongVersion.writeUInt32BE(0x0a0a0a0a, 1);
    await udp([...random, ...initialLike, initial.subarray(0, 20), initial.subarray(0, 600), initial.subarray(0, 1199), corrupt, wrongVersion])(port);
  };
}

/**
 * A QUIC client with the certificate in `certs[who]` that connects, writes `records` on the stream (a
 * greeting, then whatever the attack is), waits until they left, and goes away.
 */
function quicPeer(who: keyof typeof certs, records: Buffer[]): Attack {
  return async (port) => {
    const ep = new QuicEndpoint({ tls: loadIdentity(certs[who]), earlyData: false }, 'udp4', true);
    await ep.bind('127.0.0.1', 0, false);
    const conn = ep.connect('127.0.0.1', port);
    await new Promise<void>((r) => {
      const t = setTimeout(r, 3000);
      conn.handlers = { open: () => (clearTimeout(t), r()), close: () => (clearTimeout(t), r()) };
    });
    for (const rec of records) conn.write(rec);
    const until = Date.now() + 2000;
    while (!conn.closed && conn.queuedBytes > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200)); // let the last packets arrive before the close
    await ep.close();
  };
}

const hello = (h: Record<string, unknown>) => encodeRecord(RecordKind.Hello, Buffer.from(JSON.stringify(h)));
const dataRecord = (frames: Buffer[]) => Buffer.concat(encodeData(frames));
/** Exactly-once DATA frame sets with consecutive sequence numbers (a repeated number would be dropped as a duplicate, unread). */
let quicSeq = 0;
const eoData = (frames: Buffer[], magic = 'SD', version = 1) => {
  const h = encodeHeader(Kind.Data, session, quicSeq, quicSeq, 1);
  quicSeq++;
  h.write(magic, 0, 'latin1');
  h[2] = version;
  return dataRecord([h, ...frames]);
};
/** A record that claims 2 GiB: the reader must drop the connection, not wait for it or allocate it. */
const HUGE_RECORD = Buffer.from([0xff, 0xff, 0xff, 0x7f, 0]);

const COMMON: Attack[] = [tcp(crypto.randomBytes(4096)), tcp(TRUNCATED_GREETING), tcp(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))];

const LISTENERS: Record<string, Attack[]> = {
  // exactly-once: a ROUTER underneath; a DEALER gets through the handshake, then its frames must fail
  'zmq exactly-once': [
    ...COMMON,
    zmqPeer('dealer', [
      [crypto.randomBytes(36)],
      [dataHeader('XX')],
      [dataHeader('SD', 9)],
      [crypto.randomBytes(7)],
      [dataHeader(), spawnFrame('XX', 1)],
      [dataHeader(), spawnFrame('SR', 9)],
      [dataHeader(), spawnFrame('SR', 1).subarray(0, 12)],
    ]),
    zmqPeer('dealer', [[dataHeader(), Buffer.alloc(4 * MAX_MESSAGE)]]),
    zmqPeer('push', [[Buffer.from('wrong socket type')]]),
  ],
  // at-most-once push: nobody may send to it; a socket of the wrong type fails the handshake
  'zmq at-most-once push': [...COMMON, zmqPeer('dealer', [[Buffer.from('hello')]])],
  // at-most-once pull: a PUSH may send, and every bad frame must be refused alone
  'zmq at-most-once pull': [
    ...COMMON,
    zmqPeer('push', [[spawnFrame('XX', 1)], [spawnFrame('SR', 9)], [spawnFrame('SR', 1).subarray(0, 12)], [crypto.randomBytes(3)], [Buffer.alloc(4 * MAX_MESSAGE)]]),
  ],
  // RDMA, exactly-once (tcp provider): the side channel gets garbage, refused hellos, fabric
  // addresses that are no address (3 bytes; after it, the provider must still take good ones) or
  // that nobody answers; that bogus receiver (first, while the good stream runs) beats, so it is
  // given data that never arrives, until its link fails over, and sends bad delivery headers,
  // data, and a broken frames message.
  'rdma exactly-once': [
    sideChannel([efaHello('tcp;ofi_rxm', { delivery: 'exactly-once', address: crypto.randomBytes(3).toString('base64') })]),
    async (port) => {
      const nobody = await freePort();
      await sideChannel(
        [efaHello('tcp;ofi_rxm', { delivery: 'exactly-once', address: deadTcpAddress(nobody) })],
        () => (rdmaHooks.bogusWelcomed(), [
          framesLine(crypto.randomBytes(36)),
          framesLine(dataHeader('XX')),
          framesLine(dataHeader('SD', 9)),
          framesLine(crypto.randomBytes(7)),
          framesLine(encodeHeader(Kind.Beat, crypto.randomBytes(8), 0, 0, 0)),
          framesLine(dataHeader(), spawnFrame('SR', 1)),
          { t: 'credit', n: 1000 },
          { t: 'frames', f: 5 },
        ]),
        500,
      )(port);
    },
    ...rdmaCommon('tcp;ofi_rxm', 'at-most-once'),
  ],
  // RDMA, at most once (shm provider): only what is refused before a receiver takes a share (a
  // receiver that is welcomed takes its share of an at-most-once stream, by design).
  'rdma at-most-once': rdmaCommon('shm', 'exactly-once'),

  // exactly-once push: a pull greets properly, then sends frame sets its engine must refuse
  'quic exactly-once': [
    quicDatagrams('peer'),
    quicPeer('foreign', [hello({ pattern: 'pull', delivery: 'exactly-once', link: '00112233' })]),
    quicPeer('peer', [encodeRecord(RecordKind.Hello, Buffer.from('{not json'))]),
    quicPeer('peer', [hello({ pattern: 'pull' })]),
    quicPeer('peer', [
      hello({ pattern: 'pull', delivery: 'exactly-once', link: 'a1b2c3d4' }),
      dataRecord([crypto.randomBytes(36)]),
      eoData([spawnFrame('SR', 1)], 'XX'),
      eoData([spawnFrame('SR', 1)], 'SD', 9),
      dataRecord([crypto.randomBytes(7)]),
      eoData([spawnFrame('XX', 1)]),
      eoData([spawnFrame('SR', 9)]),
      eoData([spawnFrame('SR', 1).subarray(0, 12)]),
      encodeRecord(9 as RecordKind, Buffer.from('unknown kind')),
    ]),
    quicPeer('peer', [hello({ pattern: 'pull', delivery: 'exactly-once', link: 'a1b2c3d5' }), HUGE_RECORD]),
    quicPeer('peer', [hello({ pattern: 'pull', delivery: 'exactly-once', link: 'a1b2c3d6' }), Buffer.from([3, 0, 0, 0, 0, 1])]),
  ],
  // at-most-once pull: a push may send; every bad frame is refused alone, an oversize one drops the connection
  'quic at-most-once pull': [
    quicDatagrams('peer'),
    quicPeer('foreign', [hello({ pattern: 'push' })]),
    quicPeer('peer', [dataRecord([spawnFrame('SR', 1)])]), // data before the greeting
    quicPeer('peer', [hello({ pattern: 'push' }), dataRecord([spawnFrame('XX', 1)]), dataRecord([spawnFrame('SR', 9)]), dataRecord([spawnFrame('SR', 1).subarray(0, 12)]), dataRecord([crypto.randomBytes(3)])]),
    quicPeer('peer', [hello({ pattern: 'push' }), dataRecord([Buffer.alloc(4 * MAX_MESSAGE)])]),
    quicPeer('peer', [hello({ pattern: 'push', delivery: 'exactly-once' })]),
  ],
};

describe('faults: garbage at every listening port', function () {
  this.timeout(120_000);
  before(() => {
    [certs.victim, certs.peer] = quicIdentities(2, 'garbage');
    [certs.foreign] = quicIdentities(1, 'garbage-foreign');
  });

  it('the runtime stays up, reports, and keeps serving good peers', async function () {
    const N = 30_000;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-garbage-'));
    const startFile = path.join(dir, 'go');
    const ports = await Promise.all([1, 2, 3, 4].map(() => freePort()));
    const udpPorts = await Promise.all([1, 2].map(() => freeUdpPort()));
    const EO = { delivery: 'exactly-once', maxMessageSize: MAX_MESSAGE };
    const AMO = { delivery: 'at-most-once', maxMessageSize: MAX_MESSAGE };
    const ep = (p: number) => `tcp://127.0.0.1:${p}`;
    const src = (id: string, to: string) => ({ id, type: 'seq-source', count: N, size: 100, kind: 'buffer', window: 5000, startFile, wires: [[to]] });
    const sink = (id: string) => ({ id, type: 'seq-sink', expect: N, label: id });
    const flow = tabFlow('victim', [
      // each kind of listening port, with a good peer streaming through it
      src('s1', 'push1'), { id: 'push1', type: 'spawn-push', addr: '127.0.0.1', port: ports[0], ...EO },
      { id: 'pull1', type: 'spawn-pull', endpoints: ep(ports[0]), ...EO, wires: [['k1']] }, sink('k1'),
      src('s2', 'push2'), { id: 'push2', type: 'spawn-push', addr: '127.0.0.1', port: ports[1], ...AMO },
      { id: 'pull2', type: 'spawn-pull', endpoints: ep(ports[1]), ...AMO, wires: [['k2']] }, sink('k2'),
      src('s3', 'push3'), { id: 'push3', type: 'spawn-push', connection: 'connect', endpoints: ep(ports[2]), ...EO },
      { id: 'pull3', type: 'spawn-pull', connection: 'bind', addr: '127.0.0.1', port: ports[2], ...EO, wires: [['k3']] }, sink('k3'),
      src('s4', 'push4'), { id: 'push4', type: 'spawn-push', connection: 'connect', endpoints: ep(ports[3]), ...AMO },
      { id: 'pull4', type: 'spawn-pull', connection: 'bind', addr: '127.0.0.1', port: ports[3], ...AMO, wires: [['k4']] }, sink('k4'),
      // QUIC: an exactly-once push and an at-most-once pull listen on UDP
      src('s5', 'push5'), { id: 'push5', type: 'spawn-push', transport: 'quic', addr: '127.0.0.1', port: udpPorts[0], ...EO },
      { id: 'pull5', type: 'spawn-pull', transport: 'quic', endpoints: ep(udpPorts[0]), ...EO, wires: [['k5']] }, sink('k5'),
      src('s6', 'push6'), { id: 'push6', type: 'spawn-push', transport: 'quic', connection: 'connect', endpoints: ep(udpPorts[1]), ...AMO },
      { id: 'pull6', type: 'spawn-pull', transport: 'quic', connection: 'bind', addr: '127.0.0.1', port: udpPorts[1], ...AMO, wires: [['k6']] }, sink('k6'),
    ]);
    const victim = await startChildRuntime(flow, 'victim', { env: { SPAWN_QUIC_DIR: certs.victim } });
    try {
      const targets: Array<[string, number]> = [
        ['zmq exactly-once', ports[0]],
        ['zmq at-most-once push', ports[1]],
        ['zmq exactly-once', ports[2]],
        ['zmq at-most-once pull', ports[3]],
        ['quic exactly-once', udpPorts[0]],
        ['quic at-most-once pull', udpPorts[1]],
      ];
      fs.writeFileSync(startFile, ''); // the good peers stream while the attacks run
      await Promise.all(targets.map(async ([kind, port]) => {
        for (const attack of LISTENERS[kind]) await attack(port);
      }));
      for (const k of ['k1', 'k2', 'k3', 'k4', 'k5', 'k6']) {
        const r = await victim.waitForReport((x) => x.label === k && x.done, 60_000);
        assert.equal(r.count, N, k);
        assert.equal(r.outOfOrder, 0, `${k}: ${r.firstProblem}`);
      }
      assert.equal(victim.proc.exitCode, null, 'the runtime is still running');
      await waitUntil('the bad frames were reported', () => /EBADFRAME|malformed/.test(victim.output()), 10_000);
      const out = victim.output();
      assert.match(out, /EPROTO|broke the ZeroMQ handshake/, 'handshake garbage reported');
      assert.match(out, /delivery magic|delivery version|delivery header/, 'bad delivery headers reported');
      assert.match(out, /bad magic|unsupported version/, 'bad spawn frames reported');
      // QUIC: the foreign certificate, bad greetings and records, malformed streams and frame sets
      // (the reporter folds one code's reports within a second, so any of each kind will do)
      assert.match(out, /ETLS: .*TLS handshake failed/, 'the foreign certificate refused');
      assert.match(out, /EPROTO: a (peer|QUIC \w+) on quic:\/\//, 'bad greetings, records out of turn, the other delivery mode refused');
      assert.match(out, /EBADFRAME: (a peer on quic:\/\/|dropped a malformed message from "r:)/, 'malformed QUIC streams and frame sets reported');
    } finally {
      assert.equal(await victim.stop(), 0, victim.output());
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('RDMA: the rdma out side channel gets garbage, refused hellos and bogus fabric addresses; the runtime stays up, reports, and keeps serving good peers', async function () {
    requireSystem(this, 'libfabric', hasLibfabric(), LIBFABRIC_INSTALL);
    const N = 30_000;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-garbage-rdma-'));
    const startFile = path.join(dir, 'go');
    const ports = await Promise.all([1, 2].map(() => freePort()));
    const ep = (p: number) => `tcp://127.0.0.1:${p}`;
    const src = (id: string, to: string) => ({ id, type: 'seq-source', count: N, size: 100, kind: 'buffer', window: 5000, startFile, wires: [[to]] });
    const EO = { delivery: 'exactly-once', maxMessageSize: MAX_MESSAGE, peerTimeout: 1500 };
    const AMO = { delivery: 'at-most-once', maxMessageSize: MAX_MESSAGE };
    // The exactly-once stream starts once the bogus receiver is in (rdmaHooks), the other at once.
    const startFile5 = path.join(dir, 'go5');
    rdmaHooks.bogusWelcomed = () => fs.writeFileSync(startFile5, '');
    const flow = tabFlow('victim', [
      // With exactly-once, the bogus receiver's share fails over to the good one, after that one's
      // newer messages: its sink checks for loss and repeats, not order.
      { ...src('s5', 'out5'), startFile: startFile5 }, { id: 'out5', type: 'spawn-rdma-out', provider: 'tcp', addr: '127.0.0.1', port: ports[0], ...EO },
      { id: 'in5', type: 'spawn-efa-in', provider: 'tcp', endpoints: ep(ports[0]), ...EO, wires: [['k5']] },
      { id: 'k5', type: 'seq-sink', expect: N, label: 'k5', ordering: 'any' },
      src('s6', 'out6'), { id: 'out6', type: 'spawn-rdma-out', provider: 'shm', addr: '127.0.0.1', port: ports[1], ...AMO },
      { id: 'in6', type: 'spawn-efa-in', provider: 'shm', endpoints: ep(ports[1]), ...AMO, wires: [['k6']] },
      { id: 'k6', type: 'seq-sink', expect: N, label: 'k6' },
    ]);
    const victim = await startChildRuntime(flow, 'victim-rdma');
    try {
      const targets: Array<[string, number]> = [
        ['rdma exactly-once', ports[0]],
        ['rdma at-most-once', ports[1]],
      ];
      // An rdma out listens once its fabric endpoint is open: the attacks need it there.
      for (const [, port] of targets) {
        const until = Date.now() + 20_000;
        while (!(await accepts(port))) {
          if (Date.now() > until) throw new Error(`nothing listens on ${port}\n${victim.output()}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      fs.writeFileSync(startFile, ''); // the good peers stream while the attacks run
      // A node reports each kind of problem at once, then at most once a second (nodes/common/problems.ts):
      // the attacks are a second apart, so that each one's report can be checked.
      await Promise.all(targets.map(async ([kind, port]) => {
        for (const attack of LISTENERS[kind]) {
          await attack(port);
          await new Promise((r) => setTimeout(r, 1100));
        }
      }));
      for (const k of ['k5', 'k6']) {
        const r = await victim.waitForReport((x) => x.label === k && x.done, 60_000);
        assert.equal(r.count, N, k);
        assert.equal(r.outOfOrder, 0, `${k}: ${r.firstProblem}`);
        assert.equal(r.duplicates, 0, k);
      }
      assert.equal(victim.proc.exitCode, null, 'the runtime is still running');
      await waitUntil('the failed-over share reported', () => /EPEERLOST/.test(victim.output()), 10_000).catch((e: Error) => {
        throw new Error(`${e.message}\n${victim.output()}`);
      });
      const out = victim.output();
      assert.match(out, /is not an efa in \(unreadable line/, 'side-channel garbage reported');
      assert.match(out, /provider mismatch: rdma out on 127\.0\.0\.1:\d+ uses tcp;ofi_rxm, the receiver at .* uses shm/);
      assert.match(out, /delivery mismatch: rdma out on 127\.0\.0\.1:\d+ is at-most-once, the receiver at .* is exactly-once/);
      assert.match(out, /delivery mismatch: rdma out on 127\.0\.0\.1:\d+ is exactly-once, the receiver at .* is at-most-once/);
      assert.match(out, /its fabric address is not usable/, 'a fabric address that is none refused');
      assert.match(out, /delivery magic|delivery version|delivery header/, 'bad delivery headers reported');
      assert.match(out, /sent data to rdma out on/, 'data from a receiver refused');
      assert.match(out, /EPEERLOST: peer "127\.0\.0\.1:\d+" silent/, "the bogus receiver's share failed over");
    } finally {
      assert.equal(await victim.stop(), 0, victim.output());
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
