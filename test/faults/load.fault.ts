import { strict as assert } from 'assert';
import { ChildRuntime, startChildRuntime, tabFlow } from '../support/child-runtime';
import { freePort } from '../support/ports';
import { growth, msFromEnv, sampler } from './support';

/**
 * Long runs with memory and file descriptors sampled from /proc: a slow consumer for a minute
 * (FAULT_SLOW_MS), and a soak at high rate through three stages (FAULT_SOAK_MS, 150 s by default).
 * Bounds: the peak resident memory of the last third of a run may exceed the peak of the part
 * before it (after a warm-up quarter in which heaps, windows and libzmq buffers reach their size)
 * by at most RSS_GROWTH, and open descriptors by at most FD_GROWTH; RSS never exceeds RSS_PEAK.
 * (A leak of 100 bytes per message at the soak's rate would be some 400 MB per minute.)
 */

const SLOW_MS = msFromEnv('FAULT_SLOW_MS', 60_000);
const SOAK_MS = msFromEnv('FAULT_SOAK_MS', 150_000);
const RSS_GROWTH = 96 * 1024 * 1024;
const RSS_PEAK = 768 * 1024 * 1024;
const FD_GROWTH = 4;
/** FAULT_DELIVERY=at-most-once runs the same loads without acknowledgements, for comparison. */
const EO = { delivery: process.env.FAULT_DELIVERY || 'exactly-once', peerTimeout: 3000 };
const MB = (n: number) => `${(n / 1048576).toFixed(0)} MB`;

describe('faults: slow consumer and soak (exactly-once)', function () {
  this.timeout(SLOW_MS + SOAK_MS + 180_000);
  const running: ChildRuntime[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((r) => r.stop(5000)));
  });
  const start = async (flow: object[], name: string) => {
    const r = await startChildRuntime(flow, name);
    running.push(r);
    return r;
  };

  it(`a slow consumer for ${SLOW_MS / 1000} s: memory stays bounded, nothing is lost`, async function () {
    // 400 µs of CPU per message: at most 2500 messages/s, so N takes the consumer the whole period.
    const N = Math.round((SLOW_MS / 1000) * 2000);
    const port = await freePort();
    const consumer = await start(
      tabFlow('consumer', [
        { id: 'pull', type: 'spawn-pull', endpoints: `tcp://127.0.0.1:${port}`, ...EO, wires: [['sink']] },
        { id: 'sink', type: 'seq-sink', expect: N, label: 'sink', busyMicros: 400 },
      ]),
      'consumer',
    );
    const producer = await start(
      tabFlow('producer', [
        { id: 'src', type: 'seq-source', count: N, size: 1024, kind: 'buffer', window: 20_000, wires: [['push']] },
        { id: 'push', type: 'spawn-push', addr: '127.0.0.1', port, ...EO },
      ]),
      'producer',
    );
    const sp = sampler(producer.proc.pid!, 1000);
    const sc = sampler(consumer.proc.pid!, 1000);
    const report = await consumer.waitForReport((r) => r.done, SLOW_MS * 3 + 60_000);
    const ps = sp.stop();
    const cs = sc.stop();
    assert.equal(report.count, N);
    assert.equal(report.outOfOrder, 0, report.firstProblem);
    const took = report.lastAt - report.firstAt;
    assert.ok(took >= SLOW_MS * 0.6, `the consumer was slow for ${took} ms`);
    for (const [name, s] of [['producer', ps], ['consumer', cs]] as const) {
      const r = growth(s, 'rss');
      const f = growth(s, 'fds');
      console.log(`      ${name}: RSS peak ${MB(r.warm)} after warm-up, ${MB(r.peak)} in the last third; fds ${f.warm} → ${f.peak}`);
      assert.ok(r.growth <= RSS_GROWTH, `${name} RSS grew by ${MB(r.growth)}`);
      assert.ok(r.peak <= RSS_PEAK, `${name} RSS peaked at ${MB(r.peak)}`);
      assert.ok(f.growth <= FD_GROWTH, `${name} descriptors grew by ${f.growth}`);
    }
  });

  it(`a soak of ${SOAK_MS / 1000} s at full rate through three stages: no growth beyond the bounds`, async function () {
    const N = 2_000_000_000; // never reached: the soak is timed
    const [p1, p2] = [await freePort(), await freePort()];
    const sink = await start(
      tabFlow('sink', [
        { id: 'pull2', type: 'spawn-pull', endpoints: `tcp://127.0.0.1:${p2}`, ...EO, wires: [['sink']] },
        { id: 'sink', type: 'seq-sink', expect: N, label: 'sink' },
      ]),
      'sink',
    );
    const middle = await start(
      tabFlow('middle', [
        { id: 'pull1', type: 'spawn-pull', endpoints: `tcp://127.0.0.1:${p1}`, ...EO, wires: [['push2']] },
        { id: 'push2', type: 'spawn-push', addr: '127.0.0.1', port: p2, ...EO },
      ]),
      'middle',
    );
    const source = await start(
      tabFlow('source', [
        { id: 'src', type: 'seq-source', count: N, size: 100, kind: 'buffer', window: 50_000, wires: [['push1']] },
        { id: 'push1', type: 'spawn-push', addr: '127.0.0.1', port: p1, ...EO },
      ]),
      'source',
    );
    const samplers = [source, middle, sink].map((r) => sampler(r.proc.pid!, 2000));
    const first = await sink.waitForReport((r) => r.count > 0, 30_000);
    await new Promise((r) => setTimeout(r, SOAK_MS)); // the soak's length is the point of this test
    const last = sink.latest('sink')!;
    const all = samplers.map((s) => s.stop());
    // Still streaming at the end: every stage up, and the sink's last message recent.
    for (const r of [source, middle, sink]) assert.equal(r.proc.exitCode ?? r.proc.signalCode, null, `a stage exited during the soak\n${r.output()}`);
    assert.ok(Date.now() - last.lastAt < 5000, `the sink's last message is ${Date.now() - last.lastAt} ms old`);
    if (process.env.FAULT_VERBOSE) for (const s of all) console.log(s.map((x) => Math.round(x.rss / 1048576)).join(" "));
    assert.equal(last.outOfOrder, 0, last.firstProblem);
    const rate = (last.count - first.count) / ((last.lastAt - first.lastAt) / 1000);
    console.log(`      ${last.count} messages, ${Math.round(rate)} msg/s through three stages`);
    assert.ok(last.count > 100_000, `only ${last.count} messages in ${SOAK_MS} ms`);
    for (const [i, name] of ['source', 'middle', 'sink'].entries()) {
      const r = growth(all[i], 'rss');
      const f = growth(all[i], 'fds');
      console.log(`      ${name}: RSS peak ${MB(r.warm)} after warm-up, ${MB(r.peak)} in the last third; fds ${f.warm} → ${f.peak}`);
      assert.ok(r.growth <= RSS_GROWTH, `${name} RSS grew by ${MB(r.growth)}`);
      assert.ok(r.peak <= RSS_PEAK, `${name} RSS peaked at ${MB(r.peak)}`);
      assert.ok(f.growth <= FD_GROWTH, `${name} descriptors grew by ${f.growth}`);
    }
  });
});
