import type { ChildProcess } from 'child_process';

/** The next IPC message from `p` that has `key` set; rejects after two minutes, naming `what`. */
export function nextMessage(p: ChildProcess, key: string, what: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no ${key} within 120 s`)), 120_000);
    const on = (m: Record<string, unknown>) => {
      if (!m[key]) return;
      clearTimeout(t);
      p.off('message', on);
      resolve(m);
    };
    p.on('message', on);
  });
}

/** Asks a benchmark child to exit ({exit: true}, so that profiles get written); kills it after 5 s. */
export function endChild(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    const t = setTimeout(() => p.kill('SIGKILL'), 5000);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    p.send({ exit: true });
  });
}
