import { strict as assert } from 'assert';
import { DEFAULTS, streamConfig } from '../nodes/common/config';
import { collect, delay, FlowNode, freePort, load, node, startServer, statusHistory, stopServer, unload, waitFor, waitForStatus } from './support/nr';

/** The six nodes in one Node-RED runtime (node-red-node-test-helper), over real loopback sockets. */

const TAB = { id: 'tab1', type: 'tab', label: 'test' };
const ep = (port: number) => `tcp://127.0.0.1:${port}`;
const catcher = (): FlowNode[] => [
  { id: 'catcher', type: 'catch', z: 'tab1', scope: null, uncaught: false, wires: [['caught']] },
  { id: 'caught', type: 'helper', z: 'tab1' },
];

function send(id: string, msg: Record<string, unknown>): void {
  node(id).receive(msg as never);
}

describe('pattern nodes', function () {
  before(startServer);
  after(stopServer);
  afterEach(unload);

  describe('load and defaults', function () {
    for (const pattern of ['push', 'pull', 'pub', 'sub', 'router', 'dealer'] as const) {
      it(`${pattern} loads with default settings`, async function () {
        const port = await freePort();
        await load([TAB, { id: 'n', type: `spawn-${pattern}`, z: 'tab1', port, endpoints: ep(port), wires: [] }]);
        const n = node('n');
        assert.equal(n.type, `spawn-${pattern}`);
        const cfg = streamConfig(pattern, { id: 'n', type: `spawn-${pattern}`, z: 'tab1', name: '', endpoints: ep(port) });
        assert.equal(cfg.format, 'spawn');
        assert.equal(cfg.batch, true);
        assert.equal(cfg.highWater, DEFAULTS.hwm);
        assert.equal(cfg.maxMessageSize, DEFAULTS.maxMessageSize);
        const outputSide = pattern === 'push' || pattern === 'pub' || pattern === 'router';
        assert.deepEqual(cfg.bind, outputSide ? [`tcp://*:${DEFAULTS.port}`] : []);
        assert.deepEqual(cfg.connect, outputSide ? [] : [ep(port)]);
      });
    }
  });

  describe('push → pull', function () {
    it('delivers 5000 messages complete and in order', async function () {
      const port = await freePort();
      await load([
        TAB,
        { id: 'push', type: 'spawn-push', z: 'tab1', port, wires: [] },
        { id: 'pull', type: 'spawn-pull', z: 'tab1', endpoints: ep(port), wires: [['out']] },
        { id: 'out', type: 'helper', z: 'tab1' },
      ]);
      const got = collect('out', 5000);
      for (let i = 0; i < 5000; i++) send('push', { payload: i });
      const msgs = await got;
      assert.deepEqual(
        msgs.map((m) => m.payload),
        Array.from({ length: 5000 }, (_, i) => i),
      );
    });

    it('holds messages in order while no pull is connected, reports it, then delivers them all', async function () {
      const port2 = await freePort();
      await load([TAB, { id: 'push', type: 'spawn-push', z: 'tab1', port: port2, peerTimeout: 150, wires: [] }, ...catcher()]);
      const noPeer = waitFor('caught', (m) => m.code === 'ENOPEER');
      for (let i = 0; i < 300; i++) send('push', { payload: `m${i}` });
      const report = await noPeer;
      assert.match(String(report.payload), new RegExp(`no peer connected to tcp://\\*:${port2}.*300 messages wait`));
      // The consumer arrives late; the held messages must all reach it.
      const zmq = await import('zeromq');
      const pull = new zmq.Pull();
      pull.connect(ep(port2));
      const { decodeFrames } = await import('../native/codec');
      const seen: unknown[] = [];
      while (seen.length < 300) for (const m of decodeFrames(await pull.receive())) seen.push(m.payload);
      pull.close();
      assert.deepEqual(seen, Array.from({ length: 300 }, (_, i) => `m${i}`));
    });
  });

  describe('clean stop', function () {
    it('flushes everything queued when the flow stops (redeploy), within the linger time', async function () {
      const zmq = await import('zeromq');
      const port = await freePort();
      await load([TAB, { id: 'push', type: 'spawn-push', z: 'tab1', port, hwm: 100, wires: [] }]);
      const pull = new zmq.Pull({ receiveHighWaterMark: 10 });
      pull.connect(ep(port));
      await waitForStatus('push', (s) => s.text === 'tcp: 1 peer');
      for (let i = 0; i < 20_000; i++) send('push', { payload: i });
      // Stop at once: most messages are still queued in the node, behind a small high-water mark.
      const stopped = unload();
      const { decodeFrames } = await import('../native/codec');
      const seen: unknown[] = [];
      while (seen.length < 20_000) for (const m of decodeFrames(await pull.receive())) seen.push(m.payload);
      await stopped;
      pull.close();
      assert.deepEqual(seen, Array.from({ length: 20_000 }, (_, i) => i));
    });
  });

  describe('payload types', function () {
    const payloads: unknown[] = [
      Buffer.from([0, 1, 2, 255]),
      Buffer.alloc(0),
      Buffer.alloc(100_000, 7), // travels detached, in a frame of its own
      'text with ünïcødé',
      '',
      0,
      -1.5,
      Number.MAX_SAFE_INTEGER,
      true,
      false,
      { a: 1, nested: { b: [1, 2, 'x'] } },
      [1, 'two', null],
      null,
    ];

    for (const batch of [true, false]) {
      it(`round-trips every payload type with batching ${batch ? 'on' : 'off'}`, async function () {
        const port = await freePort();
        await load([
          TAB,
          { id: 'push', type: 'spawn-push', z: 'tab1', port, batch, wires: [] },
          { id: 'pull', type: 'spawn-pull', z: 'tab1', endpoints: ep(port), wires: [['out']] },
          { id: 'out', type: 'helper', z: 'tab1' },
        ]);
        const got = collect('out', payloads.length * 20);
        for (let r = 0; r < 20; r++) for (const p of payloads) send('push', { payload: p });
        const msgs = await got;
        msgs.forEach((m, i) => {
          const expected = payloads[i % payloads.length];
          assert.deepEqual(m.payload, expected, `message ${i}`);
          assert.equal(Buffer.isBuffer(m.payload), Buffer.isBuffer(expected), `message ${i} type`);
        });
      });
    }

    it('sends the whole message when asked, and only the payload otherwise', async function () {
      const port = await freePort();
      const port2 = await freePort();
      await load([
        TAB,
        { id: 'whole', type: 'spawn-push', z: 'tab1', port, wholeMsg: true, wires: [] },
        { id: 'bare', type: 'spawn-push', z: 'tab1', port: port2, wires: [] },
        { id: 'pull', type: 'spawn-pull', z: 'tab1', endpoints: `${ep(port)}, ${ep(port2)}`, wires: [['out']] },
        { id: 'out', type: 'helper', z: 'tab1' },
      ]);
      const got = collect('out', 2);
      send('whole', { payload: 'w', topic: 't', parts: { index: 3 }, _msgid: 'x' });
      const first = (await waitFor('out', () => true)) as Record<string, unknown>;
      send('bare', { payload: 'b', topic: 't', parts: { index: 3 } });
      const [w, b] = await got;
      assert.equal(first.payload, 'w');
      assert.deepEqual({ payload: w.payload, topic: w.topic, parts: w.parts }, { payload: 'w', topic: 't', parts: { index: 3 } });
      assert.notEqual(w._msgid, 'x', 'a received message gets its own _msgid');
      assert.equal(b.payload, 'b');
      assert.equal(b.topic, undefined);
      assert.equal(b.parts, undefined);
    });
  });

  describe('pub → sub', function () {
    it('filters by topic prefix and fans out to every subscriber', async function () {
      const port = await freePort();
      await load([
        TAB,
        { id: 'pub', type: 'spawn-pub', z: 'tab1', port, wires: [] },
        { id: 'subA', type: 'spawn-sub', z: 'tab1', endpoints: ep(port), topics: 'sensors/, sync', wires: [['outA']] },
        { id: 'subAll', type: 'spawn-sub', z: 'tab1', endpoints: ep(port), topics: '', wires: [['outAll']] },
        { id: 'outA', type: 'helper', z: 'tab1' },
        { id: 'outAll', type: 'helper', z: 'tab1' },
      ]);
      await syncSubscribers('pub', ['outA', 'outAll']);
      const gotA = collect('outA', 50, notSync);
      const gotAll = collect('outAll', 100, notSync);
      for (let i = 0; i < 50; i++) {
        send('pub', { topic: 'sensors/temp', payload: i });
        send('pub', { topic: 'logs/x', payload: `log ${i}` });
      }
      const a = await gotA;
      const all = await gotAll;
      assert.ok(a.every((m) => m.topic === 'sensors/temp'));
      assert.deepEqual(
        a.map((m) => m.payload),
        Array.from({ length: 50 }, (_, i) => i),
      );
      assert.equal(all.filter((m) => m.topic === 'logs/x').length, 50);
      assert.equal(all.filter((m) => m.topic === 'sensors/temp').length, 50);
      await delay(100); // nothing else may arrive at the filtered subscriber
      assert.equal(a.length, 50);
    });

    it('publishes a fixed topic when configured', async function () {
      const port = await freePort();
      await load([
        TAB,
        { id: 'pub', type: 'spawn-pub', z: 'tab1', port, topicMode: 'fixed', topic: 'sync', wires: [] },
        { id: 'sub', type: 'spawn-sub', z: 'tab1', endpoints: ep(port), topics: 'sync', wires: [['out']] },
        { id: 'out', type: 'helper', z: 'tab1' },
      ]);
      await syncSubscribers('pub', ['out']);
      send('pub', { topic: 'ignored', payload: 'fixed' });
      const got = await waitFor('out', (x) => x.payload === 'fixed');
      assert.equal(got.topic, 'sync');
    });
  });

  describe('router ⇄ dealer', function () {
    it('routes each reply back to the dealer that asked, with three dealers', async function () {
      const port = await freePort();
      await load([
        TAB,
        { id: 'router', type: 'spawn-router', z: 'tab1', port, wires: [['requests']] },
        { id: 'requests', type: 'helper', z: 'tab1' },
        ...[1, 2, 3].flatMap((d) => [
          { id: `d${d}`, type: 'spawn-dealer', z: 'tab1', endpoints: ep(port), identity: d === 3 ? 'dealer-three' : '', wires: [[`r${d}`]] },
          { id: `r${d}`, type: 'helper', z: 'tab1' },
        ]),
      ]);
      const identities = new Set<string>();
      node('requests').on('input', (msg) => {
        assert.ok(Buffer.isBuffer(msg.identity), 'requests carry msg.identity as a Buffer');
        identities.add((msg.identity as Buffer).toString('hex'));
        send('router', { payload: `re:${String(msg.payload)}`, identity: msg.identity });
      });
      const replies = [1, 2, 3].map((d) => collect(`r${d}`, 20));
      for (let i = 0; i < 20; i++) for (const d of [1, 2, 3]) send(`d${d}`, { payload: `d${d}-${i}` });
      const got = await Promise.all(replies);
      got.forEach((msgs, k) =>
        assert.deepEqual(
          msgs.map((m) => m.payload),
          Array.from({ length: 20 }, (_, i) => `re:d${k + 1}-${i}`),
        ),
      );
      assert.equal(identities.size, 3);
      assert.ok(identities.has(Buffer.from('dealer-three').toString('hex')), 'a configured dealer identity is used');
    });

    it('reports a reply without msg.identity, and one to an unknown identity', async function () {
      const port = await freePort();
      await load([TAB, { id: 'router', type: 'spawn-router', z: 'tab1', port, wires: [[]] }, ...catcher()]);
      const missing = waitFor('caught', (m) => /msg\.identity is missing/.test(String((m.error as Error).message)));
      send('router', { payload: 'x' });
      await missing;
      const unknown = waitFor('caught', (m) => /no peer with identity "nobody"/.test(String((m.error as Error).message)));
      send('router', { payload: 'x', identity: 'nobody' });
      const caught = await unknown;
      assert.equal(caught.payload, 'x', 'the Catch node gets the message that failed');
    });
  });

  describe('raw format with plain ZeroMQ sockets', function () {
    it('spawn push (raw) → plain zmq PULL gets the payload bytes', async function () {
      const zmq = await import('zeromq');
      const port = await freePort();
      await load([TAB, { id: 'push', type: 'spawn-push', z: 'tab1', port, format: 'raw', wires: [] }]);
      const pull = new zmq.Pull();
      pull.connect(ep(port));
      send('push', { payload: Buffer.from('bytes') });
      send('push', { payload: 'text' });
      send('push', { payload: { json: true } });
      send('push', { payload: [Buffer.from('a'), Buffer.from('b')] });
      const frames = [];
      for (let i = 0; i < 4; i++) frames.push((await pull.receive()).map((b) => b.toString()));
      pull.close();
      assert.deepEqual(frames, [['bytes'], ['text'], ['{"json":true}'], ['a', 'b']]);
    });

    it('plain zmq PUB → spawn sub (raw) with topic frames and prefix filtering', async function () {
      const zmq = await import('zeromq');
      const port = await freePort();
      const pub = new zmq.Publisher();
      await pub.bind(ep(port));
      await load([
        TAB,
        { id: 'sub', type: 'spawn-sub', z: 'tab1', endpoints: ep(port), format: 'raw', topics: 'weather', wires: [['out']] },
        { id: 'out', type: 'helper', z: 'tab1' },
      ]);
      const got = waitFor('out', (m) => m.topic === 'weather/paris');
      const pump = setInterval(() => {
        void pub.send(['traffic', 'jam']);
        void pub.send(['weather/paris', 'sunny']);
      }, 20);
      try {
        const m = await got;
        assert.ok(Buffer.isBuffer(m.payload));
        assert.equal((m.payload as Buffer).toString(), 'sunny');
      } finally {
        clearInterval(pump);
        pub.close();
      }
    });

    it('plain zmq PUSH → spawn pull (raw), and plain DEALER ⇄ spawn router (raw)', async function () {
      const zmq = await import('zeromq');
      const port = await freePort();
      const port2 = await freePort();
      const push = new zmq.Push();
      await push.bind(ep(port));
      await load([
        TAB,
        { id: 'pull', type: 'spawn-pull', z: 'tab1', endpoints: ep(port), format: 'raw', wires: [['out']] },
        { id: 'out', type: 'helper', z: 'tab1' },
        { id: 'router', type: 'spawn-router', z: 'tab1', port: port2, format: 'raw', wires: [['req']] },
        { id: 'req', type: 'helper', z: 'tab1' },
      ]);
      const got = collect('out', 2);
      await push.send('one');
      await push.send(['two', 'parts']);
      const [one, two] = await got;
      assert.equal((one.payload as Buffer).toString(), 'one');
      assert.deepEqual((two.payload as Buffer[]).map(String), ['two', 'parts']);
      push.close();

      node('req').on('input', (msg) => send('router', { payload: `echo ${String(msg.payload)}`, identity: msg.identity }));
      const dealer = new zmq.Dealer({ routingId: 'plain' });
      dealer.connect(ep(port2));
      await dealer.send('hello');
      const [reply] = await dealer.receive();
      dealer.close();
      assert.equal(reply.toString(), 'echo hello');
    });
  });

  describe('bad input and clear errors', function () {
    for (const pattern of ['pull', 'sub', 'router'] as const) {
      it(`random bytes at a listening ${pattern} are reported and it keeps serving`, async function () {
        const port = await freePort();
        await load([
          TAB,
          { id: 'n', type: `spawn-${pattern}`, z: 'tab1', connection: 'bind', port, wires: [['out']] },
          { id: 'out', type: 'helper', z: 'tab1' },
          ...catcher(),
        ]);
        await waitForStatus('n', (st) => /waiting for peers/.test(String(st.text)));
        const { randomBytes } = await import('crypto');
        const random = randomBytes(4096);
        random[0] = 0x01; // not ZMTP's 0xFF signature: libzmq takes it for an old ZMTP/1.0 peer
        const brokenGreeting = Buffer.concat([Buffer.from([0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 9]), randomBytes(64)]);
        for (const bytes of [random, brokenGreeting]) {
          const reported = waitFor('caught', (m) => m.code === 'EPROTO');
          await garbageAt(port, bytes);
          const m = await reported;
          assert.match(String(m.payload), new RegExp(`a peer on tcp://.*:${port} broke the ZeroMQ handshake`));
          await delay(1000); // one report per code per second: let the next one through
        }
        // A good peer is still served.
        const zmq = await import('zeromq');
        const sock = pattern === 'pull' ? new zmq.Push() : pattern === 'sub' ? new zmq.Publisher() : new zmq.Dealer();
        sock.connect(ep(port));
        const { encodeSingle, encodePayload, encodeMeta } = await import('../native/codec');
        const frames = [...(pattern === 'sub' ? [Buffer.alloc(0)] : []), ...encodeSingle(encodeMeta(undefined), encodePayload('good'), 1 << 20)];
        const good = waitFor('out', (x) => x.payload === 'good');
        const pump = setInterval(() => void (sock as unknown as { send(f: Buffer[]): Promise<void> }).send(frames).catch(() => undefined), 20);
        try {
          await good;
        } finally {
          clearInterval(pump);
          sock.close();
        }
      });
    }

    it('malformed spawn frames (truncated, wrong magic, wrong version) are reported and dropped', async function () {
      const zmq = await import('zeromq');
      const port = await freePort();
      const push = new zmq.Push();
      await push.bind(ep(port));
      await load([
        TAB,
        { id: 'pull', type: 'spawn-pull', z: 'tab1', endpoints: ep(port), wires: [['out']] },
        { id: 'out', type: 'helper', z: 'tab1' },
        ...catcher(),
      ]);
      const { encodeSingle, encodePayload, encodeMeta } = await import('../native/codec');
      const good = encodeSingle(encodeMeta(undefined), encodePayload('after'), 1 << 20)[0];
      const errors: string[] = [];
      node('caught').on('input', (m) => errors.push(String(m.payload)));
      const wrongVersion = Buffer.from(good);
      wrongVersion[2] = 9;
      const truncated = good.subarray(0, good.length - 2);
      for (const bad of [Buffer.from('hello'), truncated, Buffer.from('XX' + good.subarray(2).toString('latin1'), 'latin1'), wrongVersion]) {
        await push.send(bad);
        await delay(1100); // the reporter allows one report per code per second
      }
      await push.send(good);
      const after = await waitFor('out', () => true);
      push.close();
      assert.equal(after.payload, 'after', 'only the good frame produces a message');
      assert.equal(errors.length, 4, errors.join('\n'));
      assert.match(errors[0], /shorter than the 8-byte header/);
      assert.match(errors[1], /truncated|beyond the frame's end/);
      assert.match(errors[2], /bad magic/);
      assert.match(errors[3], /unsupported version 9/);
    });

    it('a second push on the same port reports the clash in status and to Catch', async function () {
      const port = await freePort();
      await load([
        TAB,
        { id: 'a', type: 'spawn-push', z: 'tab1', port, wires: [] },
        { id: 'b', type: 'spawn-push', z: 'tab1', port, wires: [] },
        ...catcher(),
      ]);
      const m = await waitFor('caught', (x) => x.code === 'EADDRINUSE');
      assert.match(String(m.payload), new RegExp(`cannot bind tcp://\\*:${port}: address already in use`));
      const loser = (m.error as { source: { id: string } }).source.id;
      assert.ok(['a', 'b'].includes(loser));
      await waitForStatus(loser, (st) => st.fill === 'red' && st.shape === 'ring' && /address already in use/.test(String(st.text)));
    });

    it('an invalid endpoint is named in the error', async function () {
      await load([TAB, { id: 'pull', type: 'spawn-pull', z: 'tab1', endpoints: 'tcp://127.0.0.1:99999', wires: [[]] }, ...catcher()]);
      const m = await waitFor('caught', (x) => x.code === 'EENDPOINT');
      assert.match(String(m.payload), /tcp:\/\/127\.0\.0\.1:99999.*port "99999"/);
    });

    it('an oversize message is refused at the sender and at the receiver', async function () {
      const port = await freePort();
      const port2 = await freePort();
      await load([
        TAB,
        { id: 'small', type: 'spawn-push', z: 'tab1', port, maxMessageSize: 1000, wires: [] },
        { id: 'big', type: 'spawn-push', z: 'tab1', port: port2, wires: [] },
        { id: 'pull', type: 'spawn-pull', z: 'tab1', endpoints: ep(port2), maxMessageSize: 1000, wires: [['out']] },
        { id: 'out', type: 'helper', z: 'tab1' },
        ...catcher(),
      ]);
      const atSender = waitFor('caught', (x) => (x.error as { source: { id: string } }).source.id === 'small');
      send('small', { payload: Buffer.alloc(2000) });
      const s = await atSender;
      assert.match(String((s.error as Error).message), /message of 2000 bytes is over the maximum message size of 1000 bytes/);
      assert.equal((s.payload as Buffer).length, 2000, 'the Catch node gets the refused message');

      const atReceiver = waitFor('caught', (x) => x.code === 'EMSGSIZE');
      const delivered = collect('out', 1);
      send('big', { payload: Buffer.alloc(1500) });
      send('big', { payload: 'fits' });
      const r = await atReceiver;
      assert.match(String(r.payload), /message of 1500 bytes is over the maximum message size of 1000 bytes/);
      const [ok] = await delivered;
      assert.equal(ok.payload, 'fits');
    });
  });

  describe('status', function () {
    it('shows yellow while waiting and a green dot with the peer count once connected', async function () {
      const port = await freePort();
      await load([TAB, { id: 'push', type: 'spawn-push', z: 'tab1', port, wires: [] }]);
      await waitForStatus('push', (s) => s.fill === 'yellow' && s.shape === 'ring' && s.text === `waiting for peers on tcp://*:${port}`);
      const zmq = await import('zeromq');
      const pull = new zmq.Pull();
      pull.connect(ep(port));
      await waitForStatus('push', (s) => s.fill === 'green' && s.shape === 'dot' && s.text === 'tcp: 1 peer');
      const seen = statusHistory('push').length;
      pull.close();
      await waitForStatus('push', (s) => s.fill === 'yellow' && s.shape === 'ring' && /waiting for peers/.test(String(s.text)), 10_000, seen);
    });
  });
});

const notSync = (m: Record<string, unknown>) => m.payload !== '__sync__';

/** Publishes "sync" probes until every listed helper has received one (ZeroMQ's slow-joiner). */
async function syncSubscribers(pubId: string, helperIds: string[]): Promise<void> {
  const seen = helperIds.map((id) => waitFor(id, (m) => m.payload === '__sync__'));
  const timer = setInterval(() => send(pubId, { topic: 'sync', payload: '__sync__' }), 20);
  try {
    await Promise.all(seen);
  } finally {
    clearInterval(timer);
  }
}

/** Connects to `port`, writes `bytes` and hangs up: what a port scanner or a confused client does. */
async function garbageAt(port: number, bytes: Buffer): Promise<void> {
  const net = await import('net');
  await new Promise<void>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes, () => s.destroy()));
    s.on('error', () => undefined); // the peer may reset us: that is the point
    s.on('close', () => resolve());
  });
}
