import { fork } from 'child_process';
import { freePort } from '../test/support/ports';
import { endChild, nextMessage } from './ipc';

/**
 * The fabric stream layer alone (native/fabric/stream.ts, no Node-RED): one openFabricOut and
 * one openFabricIn process, `count` messages of `size` bytes, a fresh Buffer per message (as a
 * Node-RED source makes), at most `window` unfinished. Compares sending modes side by side in
 * one run, interleaved: zero-copy sends (fi_sendv, the default) against copying every chunk
 * (SPAWN_FABRIC_COPY=1), over shm and tcp. For finding what limits the transport; the
 * benchmark of record, against ZeroMQ push → pull through Node-RED, is bench/rdma.ts.
 *
 *   node dist/bench/fabric-stream.js [--count 2000] [--size 1048576] [--reps 3] [--window 16]
 *
 * Rate: the receiver's clock from its first to its last message. The receiver checks order and size.
 */

interface Opts {
  count: number;
  size: number;
  reps: number;
  window: number;
  providers: string[];
}

function parse(argv: string[]): Opts {
  const o: Opts = { count: 2000, size: 1 << 20, reps: 3, window: 16, providers: ['shm', 'tcp'] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--count') o.count = Number(argv[++i]);
    else if (a === '--size') o.size = Number(argv[++i]);
    else if (a === '--reps') o.reps = Number(argv[++i]);
    else if (a === '--window') o.window = Number(argv[++i]);
    else if (a === '--providers') o.providers = argv[++i].split(',');
  }
  return o;
}

type Role = { role: 'out' | 'in'; provider: string; port: number; count: number; size: number; window: number };

/** A child: runs one side and reports over IPC. */
async function child(job: Role): Promise<void> {
  const { openFabricIn, openFabricOut } = await import('../native/fabric/stream');
  const reply = (m: object) => process.send!(m);
  // A listener keeps the IPC channel, and so the process, alive while the fabric connects.
  // {exit} ends it normally (so that --cpu-prof profiles get written).
  process.on('message', (m: { exit?: boolean }) => {
    if (m.exit) process.exit(0);
  });
  const problems: string[] = [];
  const handlers = { status: () => undefined, problem: (e: { code: string; message: string }) => problems.push(`${e.code}: ${e.message}`) };
  if (job.role === 'out') {
    const s = openFabricOut(
      { provider: job.provider as 'shm', format: 'spawn', maxMessageSize: 0, host: '127.0.0.1', port: job.port, highWater: 1000, queueLimit: 100_000, batch: true },
      { ...handlers, message: () => undefined },
    );
    reply({ listening: true });
    process.on('message', (m: { go?: boolean }) => {
      if (!m.go) return;
      let next = 0;
      let finished = 0;
      const pump = () => {
        while (next < job.count && next - finished < job.window) {
          const b = Buffer.allocUnsafe(job.size);
          b.writeUInt32LE(next++, 0);
          s.send(b, undefined, undefined, (err) => {
            if (err) problems.push(`${err.code}: ${err.message}`);
            finished++;
            if (finished === job.count) reply({ sent: true, problems });
            else pump();
          });
        }
      };
      pump();
    });
  } else {
    let got = 0;
    let first = 0;
    let bad = 0;
    const s = openFabricIn(
      { provider: job.provider as 'shm', format: 'spawn', maxMessageSize: 0, connect: [{ host: '127.0.0.1', port: job.port }], reconnectMs: 50 },
      {
        ...handlers,
        status: (st) => {
          if (st.peers > 0) reply({ connected: true });
        },
        message: (m) => {
          const b = m.payload as Buffer;
          if (got === 0) first = performance.now();
          if (b.length !== job.size || b.readUInt32LE(0) !== got) bad++;
          if (++got === job.count) reply({ done: true, ms: performance.now() - first, bad, problems });
        },
      },
    );
    void s;
  }
}

async function one(provider: string, copy: boolean, o: Opts): Promise<number> {
  const port = await freePort();
  const env = { ...process.env, SPAWN_FABRIC_COPY: copy ? '1' : '0' };
  const job = { provider, port, count: o.count, size: o.size, window: o.window };
  const out = fork(__filename, ['--child', JSON.stringify({ ...job, role: 'out' })], { env });
  const inn = fork(__filename, ['--child', JSON.stringify({ ...job, role: 'in' })], { env });
  try {
    await nextMessage(inn, 'connected', provider);
    out.send({ go: true });
    const r = await nextMessage(inn, 'done', provider);
    if (r.bad) throw new Error(`${provider}: ${r.bad} messages out of order or of the wrong size`);
    return (o.count * o.size) / 1e6 / ((r.ms as number) / 1000);
  } finally {
    await Promise.all([endChild(out), endChild(inn)]);
  }
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--child');
  if (i >= 0) return child(JSON.parse(process.argv[i + 1]) as Role);
  const o = parse(process.argv.slice(2));
  const results = new Map<string, number[]>();
  console.log(`fabric stream layer: ${o.count} × ${o.size} B, window ${o.window}, ${o.reps} rep(s), MB/s (receiver's clock)`);
  for (let rep = 1; rep <= o.reps; rep++) {
    for (const provider of o.providers) {
      for (const copy of process.env.FABRIC_BENCH_MODES === 'zero-copy' ? [false] : [false, true]) {
        const name = `${provider} ${copy ? 'copy' : 'zero-copy'}`;
        const mbs = await one(provider, copy, o);
        console.log(`  rep ${rep} ${name.padEnd(16)} ${mbs.toFixed(0)} MB/s`);
        results.set(name, [...(results.get(name) ?? []), mbs]);
      }
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log('\n| mode | median MB/s | runs |\n|---|---:|---|');
  for (const [name, xs] of results) console.log(`| ${name} | ${median(xs).toFixed(0)} | ${xs.map((x) => x.toFixed(0)).join(', ')} |`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
