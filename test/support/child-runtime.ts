import { ChildProcess, fork } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { SinkReport as BaseReport } from './sink-report';

/**
 * A headless Node-RED runtime in a child process (`spawn-red run`), with the test nodes loaded.
 * seq-sink nodes report to us over IPC; stdout and stderr are kept for failure messages.
 */

const ROOT = path.resolve(__dirname, '..', '..', '..');
export const TEST_NODES_DIR = path.join(ROOT, 'dist', 'test', 'nodes');
const CLI = path.join(ROOT, 'bin', 'spawn-red.js');

export type SinkReport = BaseReport & { event: 'sink' };

export interface ChildRuntime {
  proc: ChildProcess;
  output(): string;
  latest(label: string): SinkReport | undefined;
  /** Resolves with the first sink report that satisfies `pred`. */
  waitForReport(pred: (r: SinkReport) => boolean, timeoutMs: number): Promise<SinkReport>;
  /** SIGTERM, then the exit code (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<number | null>;
}

export interface ChildOptions {
  /** Run only this stage's tab (`run --stage`). */
  stage?: string;
  /** Peer-discovery file (`run --peers`). */
  peers?: string;
  env?: Record<string, string>;
  /** Node-RED user directory (a restarted instance gets the one it had); else a new temporary one. */
  userDir?: string;
}

export async function startChildRuntime(flow: object[], name = 'runtime', opts: ChildOptions = {}): Promise<ChildRuntime> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `spawn-red-${name}-`));
  const flowFile = path.join(dir, 'flows.json');
  fs.writeFileSync(flowFile, JSON.stringify(flow));
  const args = ['run', '--flow', flowFile, '--user-dir', opts.userDir ?? path.join(dir, 'user'), '--log-level', 'warn'];
  if (opts.stage) args.push('--stage', opts.stage);
  if (opts.peers) args.push('--peers', opts.peers);
  const proc = fork(CLI, args, {
    env: { ...process.env, SPAWN_RED_NODES_DIRS: TEST_NODES_DIR, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const latest = new Map<string, SinkReport>();
  const listeners = new Set<(r: SinkReport) => void>();
  proc.on('message', (m: { event?: string }) => {
    if (m.event === 'sink') {
      const r = m as SinkReport;
      latest.set(r.label, r);
      for (const l of listeners) l(r);
    }
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL'); // never leave a half-started runtime behind
      reject(new Error(`${name} did not start within 20 s:\n${out}`));
    }, 20_000);
    proc.on('message', (m: { event?: string }) => {
      if (m.event === 'started') {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before starting:\n${out}`));
    });
  });
  return {
    proc,
    output: () => out,
    latest: (label) => latest.get(label),
    waitForReport(pred, timeoutMs) {
      return new Promise((resolve, reject) => {
        for (const r of latest.values()) if (pred(r)) return resolve(r);
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`${name}: no matching report within ${timeoutMs} ms; latest ${JSON.stringify([...latest.values()])}\n${out}`));
        }, timeoutMs);
        const check = (r: SinkReport) => {
          if (pred(r)) {
            clearTimeout(timer);
            listeners.delete(check);
            resolve(r);
          }
        };
        listeners.add(check);
      });
    },
    async stop(graceMs = 15_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      fs.rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}

/** A one-tab flow: nodes get the tab id and sensible positions. */
export function tabFlow(tabId: string, nodes: Array<Record<string, unknown>>): object[] {
  return [{ id: tabId, type: 'tab', label: tabId }, ...nodes.map((n, i) => ({ x: 150 + 200 * i, y: 100, z: tabId, wires: [], ...n }))];
}
