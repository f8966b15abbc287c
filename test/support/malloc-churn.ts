/**
 * Child process of test/malloc-tuning.test.ts (run with --expose-gc): streams fresh 1 MiB Buffers
 * as a producer stage does (a window of 16 alive, collections freeing the rest) and prints, as
 * JSON, whether tuneMallocForStreaming() took and the minor page faults per MiB allocated.
 * argv[2]: "tune" to apply the streaming settings first.
 */
import { tuneMallocForStreaming } from '../../launcher/malloc-tuning';

const applied = process.argv[2] === 'tune' ? tuneMallocForStreaming() : false;
const MIB = 1 << 20;
const COUNT = 4000;
const template = Buffer.alloc(MIB, 0x5a);
const window: Buffer[] = [];
const gc = (globalThis as { gc?: () => void }).gc!;
const before = process.resourceUsage().minorPageFault;
for (let i = 0; i < COUNT; i++) {
  const b = Buffer.allocUnsafe(MIB);
  template.copy(b);
  window.push(b);
  if (window.length > 16) window.shift();
  if (i % 32 === 31) gc();
}
const faultsPerMiB = (process.resourceUsage().minorPageFault - before) / COUNT;
process.stdout.write(JSON.stringify({ applied, faultsPerMiB }));
