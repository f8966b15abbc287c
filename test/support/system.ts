import { spawnSync } from 'child_process';

/**
 * Tests that need a Debian package skip themselves on a developer's machine that lacks it, saying
 * how to install it; under CI (CI=true) a missing package is a failure, never a silent skip.
 */
export function requireSystem(ctx: Mocha.Context, what: string, present: boolean, install: string): void {
  if (present) return;
  const text = `${what} is not installed: ${install}`;
  if (process.env.CI === 'true') throw new Error(text);
  console.log(`      (skipped: ${text})`);
  ctx.skip();
}

/** Debian's python3 with python3-zmq (pyzmq), used by the interoperability tests. */
export const PYTHON = '/usr/bin/python3';

export function hasPyzmq(): boolean {
  return spawnSync(PYTHON, ['-c', 'import zmq'], { stdio: 'ignore' }).status === 0;
}
