import fs from 'fs';

/** Whether libfabric is installed where native/fabric/lib.ts looks (or SPAWN_LIBFABRIC names one). */
export function hasLibfabric(): boolean {
  return (
    ['/usr/lib/x86_64-linux-gnu/libfabric.so.1', '/opt/amazon/efa/lib64/libfabric.so.1', '/opt/amazon/efa/lib/libfabric.so.1'].some((p) => fs.existsSync(p)) ||
    !!process.env.SPAWN_LIBFABRIC
  );
}

export const LIBFABRIC_INSTALL = 'apt-get install libfabric1';

/**
 * Whether this machine has an EFA device (as the efa provider finds them: /sys/class/infiniband/efa_*).
 * Tests of the no-EFA behaviour skip only then; anywhere else a missing warning is a failure.
 */
export function hasEfaDevice(): boolean {
  try {
    return fs.readdirSync('/sys/class/infiniband').some((d) => d.startsWith('efa'));
  } catch {
    return false;
  }
}
