import type { Node } from 'node-red';
export { freePort } from './ports';

/**
 * node-red-node-test-helper with types and promises, and the six pattern node modules, so each
 * test reads as "load this flow, then watch these nodes".
 */
// eslint-disable-next-line @typescript-eslint/no-var-requires
const helper = require('node-red-node-test-helper');
helper.init(require.resolve('node-red'));

export type FlowNode = Record<string, unknown> & { id: string; type: string };
export type TestNode = Node & { on(event: 'input', cb: (msg: Record<string, unknown>) => void): void };

// Compiled node modules, as Node-RED loads them.
export const patternModules = ['push', 'pull', 'pub', 'sub', 'router', 'dealer'].map(
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  (p) => require(`../../nodes/${p}/${p}`),
);

export function startServer(): Promise<void> {
  return new Promise((resolve) => helper.startServer(resolve));
}

export async function stopServer(): Promise<void> {
  await helper.unload();
  await new Promise((resolve) => helper.stopServer(resolve));
}

/** Load a flow with the pattern nodes (and any other node modules it needs). */
export async function load(flow: FlowNode[], more: unknown[] = []): Promise<void> {
  await helper.load([...patternModules, ...more], flow);
}

export async function unload(): Promise<void> {
  await helper.unload();
}

export function node(id: string): TestNode {
  const n = helper.getNode(id);
  if (!n) throw new Error(`node ${id} is not in the loaded flow`);
  return n;
}

/** Collects the messages a helper node receives; resolves once `count` have arrived. */
export function collect(
  id: string,
  count: number,
  filter: (msg: Record<string, unknown>) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<Record<string, unknown>[]> {
  const got: Record<string, unknown>[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`node ${id} received ${got.length} of ${count} messages within ${timeoutMs} ms`)),
      timeoutMs,
    );
    node(id).on('input', (msg) => {
      if (!filter(msg)) return;
      got.push(msg);
      if (got.length === count) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

/** Resolves with the first message at helper node `id` that satisfies `pred`. */
export function waitFor(id: string, pred: (msg: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const seen: string[] = [];
    const timer = setTimeout(() => reject(new Error(`node ${id}: no matching message within ${timeoutMs} ms; saw ${JSON.stringify(seen.slice(-5))}`)), timeoutMs);
    node(id).on('input', (msg) => {
      seen.push(String((msg.error as { message?: string })?.message ?? msg.payload));
      if (pred(msg)) {
        clearTimeout(timer);
        resolve(msg);
      }
    });
  });
}

type Status = { fill?: string; shape?: string; text?: string };

/** Every status node `id` has shown since the flow loaded (the helper spies on Node.status). */
export function statusHistory(id: string): Status[] {
  const spy = node(id).status as unknown as { getCalls(): Array<{ thisValue: { id: string }; args: [Status] }> };
  return spy
    .getCalls()
    .filter((c) => c.thisValue?.id === id)
    .map((c) => c.args[0]);
}

/** Resolves when node `id` shows, or has shown since `after` statuses, a status matching `pred`. */
export async function waitForStatus(id: string, pred: (s: Status) => boolean, timeoutMs = 10_000, after = 0): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const history = statusHistory(id).slice(after);
    if (history.some(pred)) return;
    if (Date.now() > deadline) throw new Error(`node ${id}: no matching status within ${timeoutMs} ms; saw ${JSON.stringify(history.slice(-5))}`);
    await delay(20);
  }
}


export const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
