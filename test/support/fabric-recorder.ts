import type { StreamError } from '../../native/errors';
import type { FabricHandlers } from '../../native/fabric/stream';
import type { StreamStatus } from '../../native/zmq';

/**
 * Stream handlers that record everything (problems, statuses, messages, backpressure) and let a
 * test wait for the first record matching a predicate, with what was seen in the timeout message.
 */
export function fabricRecorder(ms = 20_000) {
  const problems: StreamError[] = [];
  const statuses: StreamStatus[] = [];
  const messages: unknown[] = [];
  const backpressure: Array<[boolean, number]> = [];
  const waiters: Array<() => void> = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  const until = <T>(what: string, find: () => T | undefined): Promise<T> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for ${what}; problems: ${problems.map((p) => p.message).join(' | ')}; last status: ${JSON.stringify(statuses[statuses.length - 1])}`)),
        ms,
      );
      const check = () => {
        const hit = find();
        if (hit !== undefined) {
          clearTimeout(timer);
          resolve(hit);
        } else waiters.push(check);
      };
      check();
    });
  const record =
    <T>(list: T[]) =>
    (x: T) => {
      list.push(x);
      wake();
    };
  const handlers: FabricHandlers = {
    message: (m) => record(messages)(m.payload),
    status: record(statuses),
    problem: record(problems),
    backpressure: (on, queued) => record(backpressure)([on, queued]),
  };
  return {
    handlers,
    problems,
    backpressure,
    /** The first problem with this code, or matching this predicate. */
    problem: (match: string | ((e: StreamError) => boolean), what = `a ${String(match)} problem`) =>
      until(what, () => problems.find(typeof match === 'string' ? (p) => p.code === match : match)),
    status: (pred: (s: StreamStatus) => boolean, what: string) => until(what, () => statuses.find(pred)),
    message: (payload: unknown) => until(`message ${String(payload)}`, () => (messages.includes(payload) ? true : undefined)),
  };
}
