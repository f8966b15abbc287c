import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as path from 'path';
import { mallocModeFor, tuneMallocForStreaming } from '../launcher/malloc-tuning';

/** launcher/malloc-tuning.ts: stage runtimes keep freed payload memory instead of faulting it in again. */
describe('malloc tuning for stage runtimes', function () {
  this.timeout(60_000);

  it('is on unless SPAWN_MALLOC=default, and names the variable for a wrong value', function () {
    assert.equal(mallocModeFor({}), 'streaming');
    assert.equal(mallocModeFor({ SPAWN_MALLOC: 'streaming' }), 'streaming');
    assert.equal(mallocModeFor({ SPAWN_MALLOC: 'default' }), 'default');
    assert.throws(() => mallocModeFor({ SPAWN_MALLOC: 'fast' }), /SPAWN_MALLOC must be streaming or default, not "fast"/);
    assert.equal(tuneMallocForStreaming({ SPAWN_MALLOC: 'default' }), false);
  });

  /** Runs the churn child (a real process, with this machine's C library). */
  function churn(tune: boolean): { applied: boolean; faultsPerMiB: number } {
    const script = path.join(__dirname, 'support', 'malloc-churn.js');
    const out = execFileSync(process.execPath, ['--expose-gc', script, tune ? 'tune' : 'plain'], { encoding: 'utf8', env: { ...process.env, SPAWN_MALLOC: '' } });
    return JSON.parse(out) as { applied: boolean; faultsPerMiB: number };
  }

  it('stops fresh 1 MiB payloads from faulting their memory in again (glibc)', function () {
    const plain = churn(false);
    const tuned = churn(true);
    if (!tuned.applied && process.platform === 'linux' && process.env.CI === 'true') assert.fail('mallopt was not applied (is the C library glibc?)');
    if (!tuned.applied) this.skip(); // not glibc: nothing to tune
    // glibc's defaults hand freed payload memory back: 50–80 faults per MiB here, 3–4 tuned.
    assert.ok(plain.faultsPerMiB > 20, `untuned: ${plain.faultsPerMiB.toFixed(1)} page faults per MiB (expected glibc to give memory back)`);
    assert.ok(tuned.faultsPerMiB < plain.faultsPerMiB / 4, `tuned: ${tuned.faultsPerMiB.toFixed(1)} page faults per MiB against ${plain.faultsPerMiB.toFixed(1)} untuned`);
  });
});
