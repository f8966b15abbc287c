import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { removeStaleShmRegions } from '../native/fabric/shm-regions';

/** libfabric shm regions left by SIGKILLed processes are removed; live processes' are kept. */
describe('fabric: stale shm regions', function () {
  it('removes the regions of processes that are gone, and only those', function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-shm-'));
    try {
      // A pid that existed and is gone: a child that ran and was reaped.
      const gone = spawnSync(process.execPath, ['-e', '0']).pid!;
      assert.ok(!fs.existsSync(`/proc/${gone}`), `pid ${gone} should be gone`);
      const names = [`${gone}:0:0`, `${gone}:1:0`, `${process.pid}:0:0`, 'not-a-region', `${gone}:0`];
      for (const n of names) fs.writeFileSync(path.join(dir, n), '');
      const removed = removeStaleShmRegions(dir).sort();
      assert.deepEqual(removed, [`${gone}:0:0`, `${gone}:1:0`]);
      assert.deepEqual(fs.readdirSync(dir).sort(), [`${gone}:0`, `${process.pid}:0:0`, 'not-a-region'].sort());
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
