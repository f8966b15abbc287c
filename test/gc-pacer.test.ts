import { strict as assert } from 'assert';
import { constants, PerformanceObserver } from 'perf_hooks';
import { encodeMeta, encodePayload, encodeSingle } from '../native/codec';
import { gcPaceBytes } from '../native/gc-pacer';
import { decodeReceived } from '../native/receiver';

/** native/gc-pacer.ts: received payload bytes bring young-generation collections (see there why). */
describe('gc pacer: young-generation collections paced by received bytes', function () {
  /** Young-generation collections seen while `work` runs (GC entries arrive after a turn of the loop). */
  async function minorCollections(work: () => void): Promise<number> {
    let minor = 0;
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if ((e as unknown as { detail: { kind: number } }).detail.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor++;
    });
    observer.observe({ entryTypes: ['gc'] });
    try {
      work();
      await new Promise((r) => setTimeout(r, 50));
      return minor;
    } finally {
      observer.disconnect();
    }
  }

  it('paces at 16 MB unless SPAWN_GC_PACE_MB says otherwise', function () {
    assert.equal(gcPaceBytes(), process.env.SPAWN_GC_PACE_MB ? Number(process.env.SPAWN_GC_PACE_MB) * 2 ** 20 : 16 * 2 ** 20);
  });

  it('runs one per pace of frame sets decoded, whatever their transport', async function () {
    if (gcPaceBytes() === 0) this.skip();
    // One 1 MiB frame set, decoded as often as it takes to cross the pace three times.
    const frames = encodeSingle(encodeMeta(undefined), encodePayload(Buffer.alloc(1 << 20, 7)), 16 * 1024);
    const bytes = frames.reduce((n, f) => n + f.length, 0);
    const rounds = Math.ceil((3 * gcPaceBytes()) / bytes);
    const seen = await minorCollections(() => {
      for (let i = 0; i < rounds; i++) assert.equal(decodeReceived(frames, { format: 'spawn', envelope: 0, optionalEnvelope: false, maxMessageSize: 0 }).messages.length, 1);
    });
    // Decoding allocates a few objects per round (far less than a young generation), so these are the pacer's.
    assert.ok(seen >= 3, `${seen} young-generation collections for ${rounds} MiB received`);
  });
});
