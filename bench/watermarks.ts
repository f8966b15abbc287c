import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { WatermarkFile, WatermarkFileOptions } from '../native/delivery/watermarks';

/**
 * What one watermark update costs an exactly-once receiver (native/delivery/watermarks.ts), the
 * three ways side by side in one run: stores into the shared mapping (the default), a pwrite(2)
 * per update (where mapping is not possible), and pwrite on an O_DSYNC descriptor
 * (SPAWN_DELIVERY_SYNC=1). One session, as during a stream; the file in the system's temp folder.
 *
 *   node dist/bench/watermarks.js
 */

const WAYS: Array<[string, WatermarkFileOptions, number]> = [
  ['default', {}, 2_000_000],
  ['mmap: false', { mmap: false }, 300_000],
  ['SPAWN_DELIVERY_SYNC=1 (O_DSYNC)', { sync: true }, 500],
];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-bench-wm-'));
try {
  const session = Buffer.from('benchses', 'latin1');
  const lines = ['| way | updates | ns per update | updates/s |', '|---|---|---|---|'];
  for (const [name, opts, n] of WAYS) {
    const w = WatermarkFile.open(path.join(dir, `${n}.watermarks`), opts);
    for (let i = 0; i < Math.min(1000, n); i++) w.write(session, i); // warm-up
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) w.write(session, i);
    const ns = Number(process.hrtime.bigint() - t0) / n;
    const method = w.method;
    w.close();
    lines.push(`| ${name}: ${method} | ${n} | ${ns.toFixed(0)} | ${(1e9 / ns).toFixed(0)} |`);
  }
  console.log(lines.join('\n'));
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
