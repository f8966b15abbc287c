import type { StreamStats } from '../../native/zmq';

/**
 * The live part of a transport node's status while it runs: the transport in use and, while
 * messages flow, messages/s and bytes/s (sent and received together). Rates are sampled once a
 * second; a node reports a change only when the text would change, so an idle node's status is
 * left alone (Node-RED sends every status change to every open editor).
 */

export interface Rates {
  messagesPerSecond: number;
  bytesPerSecond: number;
}

/** Sampling period, and so the fastest the rates change the status. */
export const RATE_INTERVAL_MS = 1000;

/** 950, 1.2k, 34k, 1.5M: short enough for a node's status line. */
export function shortNumber(n: number): string {
  if (n < 1000) return String(Math.round(n));
  const [value, unit] = n < 1e6 ? [n / 1e3, 'k'] : n < 1e9 ? [n / 1e6, 'M'] : [n / 1e9, 'G'];
  return `${value < 10 ? value.toFixed(1).replace(/\.0$/, '') : Math.round(value)}${unit}`;
}

/** `1.2k msg/s · 340 kB/s` (decimal units, as network rates are given). */
export function formatRates(r: Rates): string {
  return `${shortNumber(r.messagesPerSecond)} msg/s · ${shortNumber(r.bytesPerSecond).replace(/([kMG]?)$/, ' $1B/s')}`;
}

/** A status text that already says its transport, as `quic: 1 peer` or `auto→tcp: 2 peers`. */
const NAMES_TRANSPORT = /^[^\s:]+: /;

/**
 * The ready status text: the transport, the peers and, while messages flow, the rates:
 * `tcp: 2 peers`, `tcp: 1 peer · 12k msg/s · 1.4 MB/s`. A stream whose own text names its
 * transport keeps it (`quic: 1 peer · ...`).
 */
export function readyText(peersText: string, transport: string, rates: Rates | undefined): string {
  const named = NAMES_TRANSPORT.test(peersText) ? peersText : `${transport}: ${peersText}`;
  return rates ? `${named} · ${formatRates(rates)}` : named;
}

const totals = (s: StreamStats) => ({ messages: s.sentMessages + s.receivedMessages, bytes: s.sentBytes + s.receivedBytes });

/**
 * Samples a stream's counters every `intervalMs` and calls `onChange` with the rates while
 * messages flow, then once with undefined when they stop; never while a node stays idle.
 * Returns the function that stops sampling.
 */
export function watchRates(stats: () => StreamStats, onChange: (rates: Rates | undefined) => void, intervalMs = RATE_INTERVAL_MS): () => void {
  let last = totals(stats());
  let lastAt = Date.now();
  let flowing = false;
  const timer = setInterval(() => {
    const now = Date.now();
    const current = totals(stats());
    const secs = Math.max(0.001, (now - lastAt) / 1000);
    const rates = { messagesPerSecond: (current.messages - last.messages) / secs, bytesPerSecond: (current.bytes - last.bytes) / secs };
    last = current;
    lastAt = now;
    if (rates.messagesPerSecond > 0 || rates.bytesPerSecond > 0) {
      flowing = true;
      onChange(rates);
    } else if (flowing) {
      flowing = false;
      onChange(undefined);
    }
  }, intervalMs);
  // A status display must not keep a stopping runtime alive.
  timer.unref();
  return () => clearInterval(timer);
}
