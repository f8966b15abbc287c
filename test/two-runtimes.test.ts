import { strict as assert } from 'assert';
import { startChildRuntime, tabFlow } from './support/child-runtime';
import { freePort } from './support/nr';

/** push → pull between two Node-RED runtimes in separate processes. */

const N = 100_000;

async function pipeline(opts: { busyMicros?: number; window?: number; kind?: string; size?: number; batch?: boolean }) {
  const port = await freePort();
  const producer = tabFlow('producer', [
    { id: 'src', type: 'seq-source', count: N, size: opts.size ?? 100, kind: opts.kind ?? 'buffer', window: opts.window ?? 0, wires: [['push']] },
    { id: 'push', type: 'spawn-push', addr: '127.0.0.1', port, batch: opts.batch ?? true },
  ]);
  const consumer = tabFlow('consumer', [
    { id: 'pull', type: 'spawn-pull', endpoints: `tcp://127.0.0.1:${port}`, wires: [['sink']] },
    { id: 'sink', type: 'seq-sink', expect: N, label: 'sink', busyMicros: opts.busyMicros ?? 0 },
  ]);
  // The consumer starts first and waits; the producer's messages then flow as soon as it binds.
  const c = await startChildRuntime(consumer, 'consumer');
  const p = await startChildRuntime(producer, 'producer');
  try {
    const report = await c.waitForReport((r) => r.done, 120_000);
    assert.equal(report.count, N);
    assert.equal(report.outOfOrder, 0, report.firstProblem);
    return report;
  } finally {
    assert.equal(await p.stop(), 0, `producer exit code\n${p.output()}`);
    assert.equal(await c.stop(), 0, `consumer exit code\n${c.output()}`);
  }
}

describe('two Node-RED runtimes in separate processes', function () {
  this.timeout(180_000);

  it(`${N} sequence-numbered messages push → pull arrive complete and in order`, async function () {
    const r = await pipeline({});
    assert.equal(r.bytes, N * 100);
  });

  it(`${N} messages arrive complete and in order through a deliberately slow consumer`, async function () {
    // 30 µs of CPU per message: the consumer needs at least 3 s, far longer than the producer.
    const r = await pipeline({ busyMicros: 30, window: 5000 });
    assert.ok(r.lastAt - r.firstAt >= 2500, `the consumer was not slow: ${r.lastAt - r.firstAt} ms`);
  });

  it('batching off gives the same result', async function () {
    await pipeline({ batch: false, kind: 'object' });
  });
});
