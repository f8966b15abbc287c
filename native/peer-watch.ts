import { errorText, StreamError } from './errors';

/**
 * What every transport does the same way while it waits for peers: report ENOPEER when nobody
 * comes, and keep retrying a bind whose address is taken.
 */

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export interface NoPeerOptions {
  /** How long something may wait with no peer before it is reported (default 5 s). */
  ms: number | undefined;
  /** The endpoints, as the report names them. */
  where: string;
  /** A peer is connected: nothing to report, and the next outage is reported again. */
  connected(): boolean;
  /** Nothing to report for now either: closed, not bound yet, or already showing an error. */
  quiet(): boolean;
  /** Something waits for a peer: queued messages, or an input with endpoints to reach. */
  waiting(): boolean;
  /** Messages waiting, for the report. */
  pending(): number;
  problem(e: StreamError): void;
}

/** ENOPEER, once per outage. Returns the function that stops watching. */
export function watchForNoPeer(o: NoPeerOptions): () => void {
  const ms = o.ms ?? 5000;
  let reported = false;
  let since = Date.now();
  const timer = setInterval(() => {
    const connected = o.connected();
    if (connected) reported = false;
    if (connected || o.quiet() || !o.waiting()) {
      since = Date.now();
      return;
    }
    if (!reported && Date.now() - since >= ms) {
      reported = true;
      const n = o.pending();
      const what = n > 0 ? `${n} message${n === 1 ? '' : 's'} wait; ` : '';
      o.problem(new StreamError('ENOPEER', `no peer connected to ${o.where} after ${Math.round(ms / 1000)} s; ${what}still trying`));
    }
  }, Math.min(1000, Math.max(50, ms / 4)));
  // A watchdog must not keep a stopping process alive.
  timer.unref();
  return () => clearInterval(timer);
}

export interface BindRetryOptions {
  closed(): boolean;
  /** Each failed attempt, before the next one. */
  failed(e: StreamError): void;
  /** What is bound, for the message: `address` (TCP) or `UDP address`. */
  kind?: string;
}

/**
 * Binds each of `endpoints` in turn (bindRetrying), the way every stream shows it: a failure
 * becomes the stream's error text (`error`, for its status) and a reported problem; a bind that
 * succeeds clears the text. Resolves true once all are bound, false when the stream closed first.
 */
export async function bindEach(
  endpoints: readonly string[],
  bind: (endpoint: string) => Promise<void>,
  o: { closed(): boolean; error(text: string | undefined): void; problem(e: StreamError): void },
): Promise<boolean> {
  for (const ep of endpoints) {
    const failed = (e: StreamError) => {
      o.error(e.message);
      o.problem(e);
    };
    if (!(await bindRetrying(ep, () => bind(ep), { closed: o.closed, failed }))) return false;
    o.error(undefined);
  }
  return true;
}

/**
 * Binds `text`, retrying with a backoff (0.5 s, doubling up to 10 s) while it fails: a port held
 * by a stopping process is usually free a moment later. Resolves true once bound, false when the
 * stream closed first.
 */
export async function bindRetrying(text: string, bind: () => Promise<void>, o: BindRetryOptions): Promise<boolean> {
  let backoff = 500;
  for (;;) {
    if (o.closed()) return false;
    try {
      await bind();
      return true;
    } catch (e) {
      if (o.closed()) return false;
      const code = (e as { code?: string }).code;
      o.failed(
        code === 'EADDRINUSE'
          ? new StreamError('EADDRINUSE', `cannot bind ${text}: ${o.kind ?? 'address'} already in use (another node or program listens on that port); retrying`)
          : new StreamError('EBIND', `cannot bind ${text}: ${errorText(e)}; retrying`),
      );
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 10_000);
    }
  }
}
