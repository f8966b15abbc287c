import { strict as assert } from 'assert';
import * as fs from 'fs';
import { startChildRuntime, tabFlow } from './support/child-runtime';
import { freePort } from './support/nr';

/** push → pull between two Node-RED runtimes in separate processes. */

const N_DEFAULT = 100_000;
const N = N_DEFAULT;

interface PipelineOptions {
  busyMicros?: number;
  window?: number;
  kind?: string;
  size?: number;
  batch?: boolean;
  count?: number;
  /** Called with the producer's pid once it runs, and undefined when the stream is done. */
  watchProducer?: (pid: number | undefined) => void;
}

/** Largest resident set of `pid` seen until stop() (sampled every 20 ms from /proc). */
function rssPeak(pid: number): { stop(): number } {
  let peak = 0;
  const sample = () => {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (m) peak = Math.max(peak, Number(m[1]) * 1024);
  };
  const timer = setInterval(sample, 20);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return peak;
    },
  };
}

async function pipeline(opts: PipelineOptions) {
  const N = opts.count ?? N_DEFAULT;
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
  opts.watchProducer?.(p.proc.pid);
  try {
    const report = await c.waitForReport((r) => r.done, 120_000);
    opts.watchProducer?.(undefined);
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

  it("3,000 messages of 1 MiB: the producer's memory follows its window, not what it sent", async function () {
    // The sender used to keep the payloads it had sent until it compacted its queue, 4,096
    // messages later: a producer streaming 1 MiB payloads grew to 4 GB.
    let watch: { stop(): number } | undefined;
    let peak = 0;
    await pipeline({
      count: 3000,
      size: 1 << 20,
      window: 64,
      watchProducer: (pid) => {
        if (pid !== undefined) watch = rssPeak(pid);
        else peak = watch!.stop();
      },
    });
    // 64 MiB in flight plus what V8 has not collected yet: measured 0.4–0.7 GB, against 3 GB sent.
    assert.ok(peak > 0 && peak < 1.2 * 2 ** 30, `the producer's resident set peaked at ${(peak / 2 ** 20).toFixed(0)} MiB`);
  });
});
