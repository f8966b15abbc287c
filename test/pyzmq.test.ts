import { strict as assert } from 'assert';
import { spawn } from 'child_process';
import { collect, freePort, load, node, startServer, stopServer, unload } from './support/nr';
import { hasPyzmq, PYTHON, requireSystem } from './support/system';

/**
 * Raw format against pyzmq programs written as in the spawn streaming guide: a Node-RED stage
 * exchanges messages with plain Python ZeroMQ producers and consumers.
 */

const TAB = { id: 'tab1', type: 'tab', label: 'test' };

function python(script: string): { done: Promise<string> } {
  const p = spawn(PYTHON, ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  const done = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`python timed out\n${out}\n${err}`));
    }, 20_000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`python exited ${code}\n${out}\n${err}`));
    });
  });
  return { done };
}

describe('raw format with pyzmq programs', function () {
  before(function () {
    requireSystem(this, 'pyzmq for Debian python3', hasPyzmq(), 'apt-get install python3-zmq');
  });
  before(startServer);
  after(stopServer);
  afterEach(unload);

  it('a Python PUSH producer feeds a spawn pull', async function () {
    const port = await freePort();
    await load([
      TAB,
      { id: 'pull', type: 'spawn-pull', z: 'tab1', endpoints: `tcp://127.0.0.1:${port}`, format: 'raw', wires: [['out']] },
      { id: 'out', type: 'helper', z: 'tab1' },
    ]);
    const got = collect('out', 1000);
    const producer = python(`
import zmq
ctx = zmq.Context()
push = ctx.socket(zmq.PUSH)
push.bind("tcp://127.0.0.1:${port}")
for i in range(1000):
    push.send(b"record-%d" % i)
push.close(linger=10000)
ctx.term()
`);
    const msgs = await got;
    await producer.done;
    assert.deepEqual(
      msgs.map((m) => (m.payload as Buffer).toString()),
      Array.from({ length: 1000 }, (_, i) => `record-${i}`),
    );
  });

  it('a spawn push feeds the guide\'s Python PULL consumer', async function () {
    const port = await freePort();
    await load([TAB, { id: 'push', type: 'spawn-push', z: 'tab1', addr: '127.0.0.1', port, format: 'raw', wires: [] }]);
    const consumer = python(`
import zmq, json
ctx = zmq.Context()
socket = ctx.socket(zmq.PULL)
socket.connect("tcp://127.0.0.1:${port}")
seen = [socket.recv() for _ in range(500)]
print(json.dumps([s.decode() for s in seen]))
`);
    for (let i = 0; i < 500; i++) node('push').receive({ payload: i % 2 ? `text ${i}` : { n: i } } as never);
    const seen = JSON.parse(await consumer.done) as string[];
    assert.deepEqual(
      seen,
      Array.from({ length: 500 }, (_, i) => (i % 2 ? `text ${i}` : JSON.stringify({ n: i }))),
    );
  });

  it('a spawn pub reaches a Python SUB with the topic as the first frame', async function () {
    const port = await freePort();
    await load([TAB, { id: 'pub', type: 'spawn-pub', z: 'tab1', addr: '127.0.0.1', port, format: 'raw', wires: [] }]);
    const sub = python(`
import zmq
ctx = zmq.Context()
s = ctx.socket(zmq.SUB)
s.connect("tcp://127.0.0.1:${port}")
s.setsockopt(zmq.SUBSCRIBE, b"weather")
topic, data = s.recv_multipart()
print(topic.decode(), data.decode())
`);
    // pub/sub has no delivery guarantee for a subscriber that is still joining: publish until it hears.
    const timer = setInterval(() => {
      node('pub').receive({ topic: 'traffic', payload: 'ignored' } as never);
      node('pub').receive({ topic: 'weather/oslo', payload: 'snow' } as never);
    }, 20);
    try {
      assert.equal((await sub.done).trim(), 'weather/oslo snow');
    } finally {
      clearInterval(timer);
    }
  });
});
