import fs from 'fs';

/** Whether libfabric is installed where native/fabric/lib.ts looks (or SPAWN_LIBFABRIC names one). */
export function hasLibfabric(): boolean {
  return (
    ['/usr/lib/x86_64-linux-gnu/libfabric.so.1', '/opt/amazon/efa/lib64/libfabric.so.1', '/opt/amazon/efa/lib/libfabric.so.1'].some((p) => fs.existsSync(p)) ||
    !!process.env.SPAWN_LIBFABRIC
  );
}

export const LIBFABRIC_INSTALL = 'apt-get install libfabric1';
