import { strict as assert } from 'assert';
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DeliveryEngine, LinkIo } from '../native/delivery/engine';
import { Kind } from '../native/delivery/protocol';
import { DEFAULT_MAX_SESSIONS, WatermarkFile, WatermarkFileError } from '../native/delivery/watermarks';
import { StreamError } from '../native/errors';
import { ConfigError } from '../nodes/common/config';
import { openWatermarks, watermarkPath } from '../nodes/common/delivery-state';
import { until } from './support/until';

/**
 * The exactly-once receiver's watermark file (native/delivery/watermarks.ts): what a killed and
 * restarted receiver reads back, the file's bounds and damage, and the engine dropping what a
 * "killed" receiver had finished but not acknowledged, on the same session and after a fail-over.
 */

const sid = (n: number) => Buffer.from(`sess${String(n).padStart(4, '0')}`, 'latin1');


const SIZE = (slots: number) => 32 + slots * 64;

describe('delivery watermark file', function () {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-wm-'));
    file = path.join(dir, 'state', 'pull.watermarks');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const mmap of [true, false]) {
    const method = mmap ? 'mmap' : 'pwrite';
    it(`${method}: reads back each session's last watermark; the file has a fixed size, slots are rewritten in place`, function () {
      const w = WatermarkFile.open(file, { mmap });
      assert.equal(w.method, method);
      assert.deepEqual(w.restored(), []);
      assert.equal(fs.statSync(file).size, SIZE(DEFAULT_MAX_SESSIONS), '64 KiB and the header, written in full at once');
      for (let i = 1; i <= 1000; i++) {
        w.write(sid(1), i);
        if (i % 3 === 0) w.write(sid(2), i * 2);
      }
      w.write(sid(3), 2 ** 40 + 7); // beyond 32 bits
      // No close: a killed process does not close either; the page cache has the stores.
      const again = WatermarkFile.open(file, { mmap });
      const got = new Map(again.restored().map((r) => [r.session.toString('latin1'), r.done]));
      assert.deepEqual(got, new Map([[sid(1).toString('latin1'), 1000], [sid(2).toString('latin1'), 1998], [sid(3).toString('latin1'), 2 ** 40 + 7]]));
      // The reopened file goes on in the same slots.
      again.write(sid(1), 1001);
      again.write(sid(4), 5);
      assert.equal(fs.statSync(file).size, SIZE(DEFAULT_MAX_SESSIONS));
      const third = WatermarkFile.open(file, { mmap });
      assert.equal(third.restored().find((r) => r.session.equals(sid(1)))!.done, 1001);
      assert.equal(third.restored().find((r) => r.session.equals(sid(4)))!.done, 5);
      w.close();
      again.close();
      third.close();
    });

    it(`${method}: a copy torn by a crash in mid-update leaves the other one, an update behind`, function () {
      const w = WatermarkFile.open(file, { mmap });
      w.write(sid(1), 7); // copy 0
      w.write(sid(1), 8); // copy 1
      w.close();
      const b = fs.readFileSync(file);
      b[32 + 32 + 9] ^= 0xff; // copy 1's watermark, as a half-done store would leave it
      fs.writeFileSync(file, b);
      const warnings: string[] = [];
      const r = WatermarkFile.open(file, { mmap, warn: (t) => warnings.push(t) });
      assert.deepEqual(r.restored().map((x) => x.done), [7]);
      assert.match(warnings.join('\n'), /1 corrupt record ignored/);
      r.write(sid(1), 9); // into the torn copy: the intact one stays until the next update
      r.close();
      const again = WatermarkFile.open(file, { mmap });
      assert.deepEqual(again.restored().map((x) => x.done), [9]);
      again.close();
    });
  }

  it('sessions that ended do not make it grow: past maxSessions the slot written longest ago is reused', function () {
    const w = WatermarkFile.open(file, { maxSessions: 4 });
    for (let i = 0; i < 10; i++) w.write(sid(i), i + 100);
    w.close();
    assert.equal(fs.statSync(file).size, SIZE(4));
    const r = WatermarkFile.open(file, { maxSessions: 4 });
    assert.deepEqual(r.restored().map((x) => x.session.toString('latin1')).sort(), [6, 7, 8, 9].map((i) => sid(i).toString('latin1')));
    r.close();
  });

  it('a corrupt record is reported and skipped; the others are used, nothing throws', function () {
    const w = WatermarkFile.open(file);
    w.write(sid(1), 10);
    w.write(sid(2), 20);
    w.write(sid(3), 30);
    w.close();
    const b = fs.readFileSync(file);
    b[32 + 64 + 9] ^= 0xff; // the second slot's only record
    fs.writeFileSync(file, b);
    const warnings: string[] = [];
    const r = WatermarkFile.open(file, { warn: (t) => warnings.push(t) });
    assert.deepEqual(r.restored().map((x) => x.done).sort((x, y) => x - y), [10, 30]);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /1 corrupt record ignored/);
    assert.ok(warnings[0].includes(file), 'the warning names the file');
    r.close();
  });

  it('a truncated file: the partial slot is reported, whole ones are used, the file is whole again', function () {
    const w = WatermarkFile.open(file);
    w.write(sid(1), 10);
    w.write(sid(2), 20);
    w.close();
    fs.truncateSync(file, 32 + 64 + 13);
    const warnings: string[] = [];
    const r = WatermarkFile.open(file, { warn: (t) => warnings.push(t) });
    assert.deepEqual(r.restored().map((x) => x.done), [10]);
    assert.match(warnings.join('\n'), /truncated/);
    assert.equal(fs.statSync(file).size, SIZE(DEFAULT_MAX_SESSIONS));
    r.write(sid(3), 3);
    r.close();
    assert.deepEqual(WatermarkFile.open(file).restored().map((x) => x.done).sort(), [10, 3].sort());
  });

  it('a file that is not a watermark file (or a header cut short) is kept aside and started afresh', function () {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    for (const junk of [Buffer.from('{"not":"ours"} and then some more bytes to pass 32'), Buffer.from('SDW')]) {
      fs.writeFileSync(file, junk);
      const warnings: string[] = [];
      const r = WatermarkFile.open(file, { warn: (t) => warnings.push(t) });
      assert.deepEqual(r.restored(), []);
      assert.match(warnings.join('\n'), /not a spawn-red watermark file/);
      assert.deepEqual(fs.readFileSync(`${file}.corrupt`), junk, 'the old file is kept for a look');
      r.write(sid(1), 1);
      r.close();
      assert.deepEqual(WatermarkFile.open(file).restored().map((x) => x.done), [1]);
    }
  });

  it('a second live process is refused the file; once it is killed, the file is taken over', async function () {
    // A child process opens the file and holds it; it is not this process.
    const child = spawn(process.execPath, ['-e', `const { WatermarkFile } = require(${JSON.stringify(require.resolve('../native/delivery/watermarks'))}); const w = WatermarkFile.open(${JSON.stringify(file)}); w.write(Buffer.from('childses'), 42); process.send('open'); setInterval(() => {}, 1000);`], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.once('message', () => resolve());
        child.once('exit', (c) => reject(new Error(`child exited with ${c}`)));
      });
      assert.throws(
        () => WatermarkFile.open(file),
        (e: unknown) => e instanceof WatermarkFileError && e.message.includes(`in use by process ${child.pid}`) && e.message.includes(file),
      );
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(undefined) : child.once('exit', r)));
    }
    const w = WatermarkFile.open(file);
    assert.deepEqual(w.restored().map((r) => [r.session.toString('latin1'), r.done]), [['childses', 42]], 'what the killed process wrote survived it');
    w.close();
  });

  it('a folder that cannot be written: an error naming the node and the path, not a crash', function () {
    const blocker = path.join(dir, 'a-file');
    fs.writeFileSync(blocker, 'x');
    const env = { SPAWN_DELIVERY_DIR: path.join(blocker, 'state') };
    const warned: string[] = [];
    assert.throws(
      () => openWatermarks({ id: 'n1', name: 'orders in', warn: (t) => warned.push(t) }, undefined, env),
      (e: unknown) =>
        e instanceof ConfigError && /node "orders in" \(n1\)/.test(e.message) && e.message.includes(path.join(blocker, 'state')) && /SPAWN_DELIVERY_DIR/.test(e.message),
    );
  });

  it('where the file lives: one per stage instance and node; the same one for a restart', function () {
    const env = { SPAWN_PIPELINE_ID: 'p1', SPAWN_STAGE_ID: 'parse', SPAWN_INSTANCE_INDEX: '0' };
    const a0 = watermarkPath('pull1', env, '/u');
    assert.equal(a0, path.join('/u', 'spawn-delivery', 'p1.parse.0-pull1.watermarks'));
    assert.equal(watermarkPath('pull1', { ...env }, '/u'), a0, 'a restart of the instance finds its file');
    assert.notEqual(watermarkPath('pull1', { ...env, SPAWN_INSTANCE_INDEX: '1' }, '/u'), a0, 'two instances sharing a folder never share a file');
    assert.notEqual(watermarkPath('pull2', env, '/u'), a0);
    assert.equal(watermarkPath('pull1', { ...env, SPAWN_DELIVERY_DIR: '/var/x' }, '/u'), path.join('/var/x', 'p1.parse.0-pull1.watermarks'));
    assert.equal(watermarkPath('a/b', {}, '/u'), path.join('/u', 'spawn-delivery', 'a_b.watermarks'));
    assert.equal(watermarkPath('pull1', {}, undefined), undefined, 'no user directory, no folder named: in memory only');
  });

  it('spawn-red run without --user-dir (a temporary one) points a launched stage at ~/.spawn-red/delivery/<pipeline>', function () {
    const out = path.join(dir, 'env.txt');
    const flowFile = path.join(dir, 'flows.json');
    fs.writeFileSync(
      flowFile,
      JSON.stringify([
        { id: 'tabX', type: 'tab', label: 'X' },
        { id: 'stX', type: 'spawn-stage', z: 'tabX', stageId: 'x', command: `echo "dir=$SPAWN_DELIVERY_DIR" > ${out}`, wires: [] },
      ]),
    );
    const self = { stage_id: 'x', stage_index: 0, instance_id: 'local-x-0', private_ip: '127.0.0.1', dns_name: 'x-0', state: 'running', index: 0 };
    const peers = path.join(dir, 'peers.json');
    fs.writeFileSync(peers, JSON.stringify({ pipeline_id: 'pipe7', stage_id: 'x', stage_index: 0, instance_index: 0, stage_peers: [self], upstream_stages: {}, downstream_stages: {}, all_stages: { x: [self] } }));
    const cli = path.resolve(__dirname, '..', '..', 'bin', 'spawn-red.js');
    const env: NodeJS.ProcessEnv = { ...process.env, SPAWN_RED_HOME: path.join(dir, 'home') };
    delete env.SPAWN_DELIVERY_DIR;
    const run = (...extra: string[]) => {
      const r = spawnSync(process.execPath, [cli, 'run', '--flow', flowFile, '--stage', 'x', '--peers', peers, ...extra], { encoding: 'utf8', timeout: 20_000, env });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      return fs.readFileSync(out, 'utf8').trim();
    };
    assert.equal(run(), `dir=${path.join(dir, 'home', 'delivery', 'pipe7')}`);
    assert.equal(run('--user-dir', path.join(dir, 'u')), 'dir=', 'with a user directory the watermarks go there');
  });
});

/**
 * A sender and a receiver that is "killed" (its engine dropped without a word, and everything it
 * sends held back, acknowledgements included, as a SIGKILL leaves them unsent) after it finished
 * some messages, then restarted with its watermark file.
 */
function killedReceiver(opts: { sameLink: boolean }) {
  const common = { windowBytes: 1 << 30, windowFrames: 1000, beatMs: 20, deadMs: 300, addressed: false, count: () => 1, ackOnDone: true };
  const receivers = new Map<string, { engine: DeliveryEngine; dead: boolean; delivered: number[] }>();
  const problems: StreamError[] = [];
  const sender: DeliveryEngine = new DeliveryEngine(common, {
    send(key, frames) {
      const r = receivers.get(key);
      if (!r || r.dead) return Promise.reject(new Error('unreachable'));
      const copy = frames.map((f) => Buffer.from(f));
      setImmediate(() => r.dead || r.engine.receive('s', Buffer.from('s'), copy));
      return Promise.resolve();
    },
    deliver: () => undefined,
    problem: (e) => problems.push(e),
    peers: () => undefined,
  });
  const start = (key: string, watermarks: WatermarkFile | undefined, ackHeld: () => boolean) => {
    const r = { engine: undefined as unknown as DeliveryEngine, dead: false, delivered: [] as number[] };
    const io: LinkIo = {
      send(_link, frames) {
        if (r.dead) return Promise.reject(new Error('dead'));
        if (ackHeld() && (frames[0][3] === Kind.Ack || frames[0][3] === Kind.Resend)) return Promise.resolve();
        const copy = frames.map((f) => Buffer.from(f));
        setImmediate(() => r.dead || sender.receive(key, Buffer.from(key), copy));
        return Promise.resolve();
      },
      deliver(_link, frames, skip, count, done) {
        for (let i = skip; i < count; i++) {
          r.delivered.push(frames[i].readUInt32LE(0));
          done!(i); // finished at once: the watermark advances, the acknowledgement is queued
        }
      },
      problem: (e) => problems.push(e),
      peers: () => undefined,
    };
    r.engine = new DeliveryEngine({ ...common, watermarks }, io);
    r.engine.addLink('s', Buffer.from('s'));
    receivers.set(key, r);
    return r;
  };
  return { sender, start, problems, secondKey: opts.sameLink ? 'r1' : 'r2', receivers };
}

const msg = (seq: number) => {
  const f = Buffer.alloc(4);
  f.writeUInt32LE(seq);
  return [f];
};

for (const sameLink of [true, false]) {
  const how = sameLink ? 'on the same link (the peer restarted with a new epoch)' : 'on a new link after a fail-over (moved frame sets name their origin)';
  describe(`delivery engine: a receiver killed after finishing unacknowledged messages, ${how}`, function () {
    let dir: string;
    beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-wm-engine-'))));
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    for (const keepsFile of [true, false]) {
      it(keepsFile ? 'with its watermark file: what it finished is dropped and acknowledged, the rest delivered once' : 'control, without the file: what it finished comes again', async function () {
        const file = path.join(dir, 'r.watermarks');
        const h = killedReceiver({ sameLink });
        let held = true;
        const first = h.start('r1', WatermarkFile.open(file), () => held);
        try {
          await until('the sender sees the receiver', () => h.sender.peers === 1);
          for (let i = 0; i < 10; i++) await h.sender.transmit(msg(i));
          await until('the first receiver finished ten', () => first.delivered.length === 10);
          assert.equal(h.sender.inFlight, 10, 'none acknowledged: they would all be resent');
          // SIGKILL: nothing more leaves or arrives; the engine is simply abandoned.
          first.dead = true;
          first.engine.close();
          held = false;
          const second = h.start(h.secondKey, keepsFile ? WatermarkFile.open(file) : undefined, () => false);
          for (let i = 10; i < 20; i++) await h.sender.transmit(msg(i));
          assert.ok(await h.sender.settle(5000), 'everything acknowledged in the end');
          if (keepsFile) {
            assert.deepEqual(second.delivered, Array.from({ length: 10 }, (_, i) => 10 + i), 'the restarted receiver delivers only what the killed one had not finished');
          } else {
            assert.deepEqual(second.delivered.slice(0, 10), Array.from({ length: 10 }, (_, i) => i), 'without the file the finished ten come again');
          }
          second.engine.close();
        } finally {
          h.sender.close();
          for (const r of h.receivers.values()) r.engine.close();
        }
      });
    }
  });
}

describe('exactly-once nodes keep their watermark file (Node-RED runtime)', function () {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const nr = require('./support/nr') as typeof import('./support/nr');
  let dir: string;
  let saved: string | undefined;
  before(() => nr.startServer());
  after(() => nr.stopServer());
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-wm-nodes-'));
    saved = process.env.SPAWN_DELIVERY_DIR;
  });
  afterEach(async () => {
    await nr.unload();
    if (saved === undefined) delete process.env.SPAWN_DELIVERY_DIR;
    else process.env.SPAWN_DELIVERY_DIR = saved;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a pull records in its file what it finished (all 100 of one sender session)', async function () {
    process.env.SPAWN_DELIVERY_DIR = path.join(dir, 'state');
    const port = await nr.freePort();
    const EO = { delivery: 'exactly-once', peerTimeout: 1500, reconnect: 50 };
    await nr.load([
      { id: 'push', type: 'spawn-push', addr: '127.0.0.1', port, ...EO, wires: [] },
      { id: 'pull', type: 'spawn-pull', endpoints: `tcp://127.0.0.1:${port}`, ...EO, wires: [['out']] },
      { id: 'out', type: 'helper' },
    ]);
    const got = nr.collect('out', 100);
    for (let i = 0; i < 100; i++) nr.node('push').receive({ payload: i } as never);
    await got;
    await nr.unload();
    const file = path.join(dir, 'state', 'pull.watermarks');
    const w = WatermarkFile.open(file);
    assert.deepEqual(w.restored().map((r) => r.done), [100], 'one sender session, all 100 finished');
    w.close();
  });

  it('a folder that cannot be written: the node does not start, its status and log name it and the path', async function () {
    const blocker = path.join(dir, 'a-file');
    fs.writeFileSync(blocker, 'x');
    process.env.SPAWN_DELIVERY_DIR = path.join(blocker, 'state');
    await nr.load([{ id: 'pull', type: 'spawn-pull', name: 'orders in', endpoints: 'tcp://127.0.0.1:5999', delivery: 'exactly-once', wires: [] }]);
    await nr.waitForStatus('pull', (s) => s.fill === 'red' && /node "orders in" \(pull\)/.test(s.text ?? '') && (s.text ?? '').includes(path.join(blocker, 'state')));
  });
});

describe('delivery header of a moved frame set', function () {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { encodeHeader, decodeHeader, HEADER_BYTES, MOVED_HEADER_BYTES } = require('../native/delivery/protocol') as typeof import('../native/delivery/protocol');
  it('carries its original session and sequence number (52 bytes); other headers stay 36', function () {
    const moved = encodeHeader(Kind.Data, sid(2), 10, 5, 3, 1, sid(1), 2 ** 33 + 4);
    assert.equal(moved.length, MOVED_HEADER_BYTES);
    const h = decodeHeader(moved);
    assert.deepEqual([h.seq, h.base, h.count, h.skip, h.originSeq], [10, 5, 3, 1, 2 ** 33 + 4]);
    assert.ok(h.origin!.equals(sid(1)) && h.id.equals(sid(2)));
    const plain = decodeHeader(encodeHeader(Kind.Data, sid(2), 10, 5, 3));
    assert.equal(plain.origin, undefined);
    // Only DATA may be long; a long ACK is malformed.
    const longAck = Buffer.concat([encodeHeader(Kind.Ack, sid(2), 10, 0, 0), Buffer.alloc(16)]);
    assert.equal(longAck.length, MOVED_HEADER_BYTES);
    assert.throws(() => decodeHeader(longAck), new RegExp(`delivery header of ${MOVED_HEADER_BYTES} bytes \\(expected ${HEADER_BYTES}`));
  });
});
