import * as fs from 'fs';

/**
 * libfabric's shm provider (also used by efa between processes on one host) keeps each
 * endpoint's region in /dev/shm as `<pid>:<n>:<n>` (16 MiB here) and unlinks it on close. A
 * process killed with SIGKILL cannot: its region stays, taking memory, and a later process that
 * gets the same pid fails fi_enable with EBUSY ("Device or resource busy"). Before an endpoint
 * opens, the regions of processes that no longer exist are removed.
 */

const SHM_DIR = '/dev/shm';
const REGION = /^(\d+):\d+:\d+$/;

/** Running, or at least not gone: a zombie (state Z) has released its memory and counts as gone. */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the command name, which is in parentheses and may contain spaces.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Removes the shm regions of processes that are gone; returns their names. */
export function removeStaleShmRegions(dir = SHM_DIR): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return []; // no /dev/shm: nothing to clean
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = REGION.exec(name);
    if (!m || alive(Number(m[1]))) continue;
    try {
      fs.unlinkSync(`${dir}/${name}`);
      removed.push(name);
    } catch {
      // Another user's region, or removed meanwhile: not ours to worry about.
    }
  }
  return removed;
}
