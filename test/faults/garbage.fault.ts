import { strict as assert } from 'assert';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import * as zmq from 'zeromq';
import { encodeHeader, Kind } from '../../native/delivery/protocol';
import { startChildRuntime, tabFlow } from '../support/child-runtime';
import { freePort } from '../support/ports';
import { waitUntil } from './support';

/**
 * Random bytes, truncated and oversize frames, wrong magic and version at every listening port of
 * every transport of a runtime that is busy serving good peers: it stays up, reports, and the good
 * streams arrive complete and in order.
 *
 * LISTENERS names each kind of listening port and the attacks that fit it. The QUIC and RDMA
 * transports add their kinds here (a quic/efa listener in the flow below, and attacks that speak to
 * it: random datagrams, a truncated handshake, frames with a wrong magic or version).
 */

type Attack = (port: number) => Promise<void>;

const MAX_MESSAGE = 1024 * 1024;

/** Raw TCP: connect, write, close. */
function tcp(bytes: Buffer): Attack {
  return (port) =>
    new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.end(bytes));
      s.on('error', () => resolve());
      s.on('close', () => resolve());
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
};

describe('faults: garbage at every listening port', function () {
  this.timeout(120_000);

  it('the runtime stays up, reports, and keeps serving good peers', async function () {
    const N = 30_000;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-garbage-'));
    const startFile = path.join(dir, 'go');
    const ports = await Promise.all([1, 2, 3, 4].map(() => freePort()));
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
    ]);
    const victim = await startChildRuntime(flow, 'victim');
    try {
      const targets: Array<[string, number]> = [
        ['zmq exactly-once', ports[0]],
        ['zmq at-most-once push', ports[1]],
        ['zmq exactly-once', ports[2]],
        ['zmq at-most-once pull', ports[3]],
      ];
      fs.writeFileSync(startFile, ''); // the good peers stream while the attacks run
      await Promise.all(targets.map(async ([kind, port]) => {
        for (const attack of LISTENERS[kind]) await attack(port);
      }));
      for (const k of ['k1', 'k2', 'k3', 'k4']) {
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
    } finally {
      assert.equal(await victim.stop(), 0, victim.output());
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
