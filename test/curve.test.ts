import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zmq from 'zeromq';
import { encodeSingle, encodePayload } from '../native/codec';
import { CurveKeyError, makeKeys, pipelineKeys, readKeyFile } from '../native/curve';
import { StreamError } from '../native/errors';
import { openZmqStream, Pattern, ZmqStream, ZmqStreamConfig } from '../native/zmq';
import { freePort } from './support/ports';
import { startChildRuntime, tabFlow } from './support/child-runtime';
import { writeKeyFile } from '../native/curve';
import { until } from './support/until';

/** CurveZMQ on the ZeroMQ transport, with real sockets: the pipeline's key admits, any other refuses. */

const ep = (port: number) => `tcp://127.0.0.1:${port}`;
const base = (pattern: Pattern, over: Partial<ZmqStreamConfig>): ZmqStreamConfig => ({
  pattern,
  format: 'spawn',
  bind: [],
  connect: [],
  highWater: 1000,
  queueLimit: 100_000,
  maxMessageSize: 0,
  reconnectMs: 50,
  batch: true,
  noPeerMs: 60_000,
  ...over,
});

function open(c: ZmqStreamConfig) {
  const got: unknown[] = [];
  const problems: StreamError[] = [];
  const stream = openZmqStream(c, { message: (m) => got.push(m.payload), status: () => undefined, problem: (e) => problems.push(e) });
  return { stream, got, problems };
}


describe('CurveZMQ encryption', function () {
  this.timeout(30_000);
  const keys = makeKeys();
  const streams: ZmqStream[] = [];
  const keep = <T extends { stream: ZmqStream }>(s: T) => (streams.push(s.stream), s);
  afterEach(async () => {
    await Promise.all(streams.splice(0).map((s) => s.close(0)));
  });

  for (const delivery of ['at-most-once', 'exactly-once'] as const) {
    it(`${delivery}: peers with the pipeline's key exchange messages; a peer with another key gets nothing`, async function () {
      const port = await freePort();
      const push = keep(open(base('push', { bind: [ep(port)], curve: keys, delivery })));
      const good = keep(open(base('pull', { connect: [ep(port)], curve: keys, delivery })));
      const wrong = keep(open(base('pull', { connect: [ep(port)], curve: makeKeys(), delivery })));
      for (let i = 0; i < 100; i++) push.stream.send(`m${i}`, undefined, undefined, () => undefined);
      await until('the good peer got all', () => good.got.length === 100);
      assert.deepEqual(good.got, Array.from({ length: 100 }, (_, i) => `m${i}`));
      assert.equal(wrong.got.length, 0);
      await until('the refusal was reported', () => push.problems.some((p) => p.code === 'EAUTH') || wrong.problems.some((p) => p.code === 'EAUTH'));
      assert.equal(wrong.stream.peers, 0);
    });
  }

  it('a client that knows the public key but not the secret cannot inject', async function () {
    const port = await freePort();
    const pull = keep(open(base('pull', { bind: [ep(port)], curve: keys })));
    const friend = keep(open(base('push', { connect: [ep(port)], curve: keys })));
    // The attacker has the public key (it is in the peer file) and a key pair of its own.
    const mine = makeKeys();
    const attacker = new zmq.Push({ curveServerKey: keys.publicKey, curvePublicKey: mine.publicKey, curveSecretKey: mine.secretKey, linger: 0 });
    attacker.connect(ep(port));
    const plain = new zmq.Push({ linger: 0 });
    plain.connect(ep(port));
    const evil = encodeSingle(Buffer.alloc(0), encodePayload('injected'), 1 << 20);
    void Promise.race([attacker.send(evil), new Promise((r) => setTimeout(r, 1000))]);
    void Promise.race([plain.send(evil), new Promise((r) => setTimeout(r, 1000))]);
    friend.stream.send('hello', undefined, undefined, () => undefined);
    await until('the friend got through', () => pull.got.includes('hello'));
    await until('the attacker was refused and reported', () => pull.problems.some((p) => p.code === 'EAUTH' && /not this pipeline's/.test(p.message)));
    await new Promise((r) => setTimeout(r, 300)); // anything the attackers got through would be here by now
    attacker.close();
    plain.close();
    assert.deepEqual(pull.got, ['hello']);
  });

  it('key files: made 0600 on first use, refused when others can read them; errors never show the key', function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-curve-'));
    try {
      const file = path.join(dir, 'user', 'curve.json');
      const k = pipelineKeys({}, file);
      assert.equal(fs.statSync(file).mode & 0o777, 0o600);
      assert.deepEqual(pipelineKeys({}, file), k, 'the same keys the second time');
      fs.chmodSync(file, 0o644);
      assert.throws(() => readKeyFile(file), (e: Error) => e instanceof CurveKeyError && /0600/.test(e.message) && !e.message.includes(k.secretKey));
      assert.throws(() => pipelineKeys({ SPAWN_CURVE_KEYS: path.join(dir, 'missing.json') }, file), /cannot be read/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('two runtimes with the pipeline key file stream encrypted; a runtime with another key is refused, with a clear error', async function () {
    this.timeout(60_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-curve-rt-'));
    const port = await freePort();
    const pipelineFile = path.join(dir, 'pipeline', 'curve-keys.json');
    const otherFile = path.join(dir, 'other', 'curve-keys.json');
    writeKeyFile(pipelineFile, makeKeys());
    writeKeyFile(otherFile, makeKeys());
    const N = 2000;
    const consumer = (label: string) =>
      tabFlow('consumer', [
        { id: 'pull', type: 'spawn-pull', endpoints: ep(port), encryption: 'curve', wires: [['sink']] },
        { id: 'sink', type: 'seq-sink', expect: N, label },
      ]);
    const producerFlow = tabFlow('producer', [
      { id: 'src', type: 'seq-source', count: N, size: 100, kind: 'buffer', startDelay: 500, wires: [['push']] },
      { id: 'push', type: 'spawn-push', addr: '127.0.0.1', port, encryption: 'curve' },
    ]);
    const stranger = await startChildRuntime(consumer('stranger'), 'stranger', { env: { SPAWN_CURVE_KEYS: otherFile } });
    const good = await startChildRuntime(consumer('good'), 'good', { env: { SPAWN_CURVE_KEYS: pipelineFile } });
    const producer = await startChildRuntime(producerFlow, 'producer', { env: { SPAWN_CURVE_KEYS: pipelineFile } });
    try {
      const r = await good.waitForReport((x) => x.done, 30_000);
      assert.equal(r.count, N);
      assert.equal(r.outOfOrder, 0);
      await until('the stranger reported the refusal', () => /EAUTH/.test(stranger.output()), 15_000);
      assert.equal(stranger.latest('stranger')?.count ?? 0, 0);
      for (const rt of [stranger, good, producer]) {
        assert.ok(!rt.output().includes(JSON.parse(fs.readFileSync(pipelineFile, 'utf8')).secretKey), 'no secret key in any log');
      }
    } finally {
      await Promise.all([producer.stop(), good.stop(), stranger.stop()]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('CurveZMQ keys from the local launcher', function () {
  it('a launch plan makes one key pair per pipeline: secret in a 0600 file, public key in every peer file', function () {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { planLaunch, instanceEnv, CURVE_KEY_FILE } = require('../launcher/local/plan') as typeof import('../launcher/local/plan');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-curve-plan-'));
    try {
      const stage = (id: string, deps: string[] = []) => ({ stage_id: id, instance_type: 'local', instance_count: 2, command: 'true', depends_on: deps });
      const state = planLaunch(
        { pipeline: { pipeline_id: 'p1', pipeline_name: 'p1', s3_bucket: 'b', on_failure: 'stop', stages: [stage('a'), stage('b', ['a'])] }, source: 'test' },
        dir,
        200,
      );
      const keyFile = path.join(dir, CURVE_KEY_FILE);
      assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
      const keys = readKeyFile(keyFile);
      assert.equal(state.instances.length, 4);
      for (const inst of state.instances) {
        const text = fs.readFileSync(path.join(inst.dir, 'pipeline-peers.json'), 'utf8');
        assert.equal(JSON.parse(text).curve_public_key, keys.publicKey);
        assert.ok(!text.includes(keys.secretKey), 'no secret key in a peer file');
        assert.equal(instanceEnv(inst, undefined).SPAWN_CURVE_KEYS, keyFile);
        assert.ok(!JSON.stringify(inst).includes(keys.secretKey), 'no secret key in the launch state');
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
