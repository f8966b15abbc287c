import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { SinkReport } from '../support/sink-report';

/**
 * Test and benchmark node: checks that sequence-numbered messages arrive complete, in order and
 * once, and reports to the parent process (IPC) or a file. `busyMicros` makes it a deliberately
 * slow consumer (CPU time per message, so the process really falls behind).
 */
interface SinkDef extends NodeDef {
  expect: number | string;
  busyMicros?: number | string;
  reportFile?: string;
  label?: string;
  /**
   * `contiguous` (default): 0, 1, 2, … exactly; `increasing`: a share of a round-robin stream;
   * `any`: several streams merged (no order), duplicates counted instead.
   */
  ordering?: 'contiguous' | 'increasing' | 'any';
  /**
   * Append every sequence number (u32 LE) to this file with a write(2) per message: what a killed
   * sink saw survives it (the fault tests SIGKILL consumers), which an IPC report would not.
   */
  logFile?: string;
  /**
   * SIGKILL this process during the work on the killAt-th message (1-based), before its effect:
   * a crash at a known point, everything before it finished (the fault tests).
   */
  killAt?: number | string;
}


function seqOf(msg: Record<string, unknown>): number | undefined {
  const p = msg.payload;
  if (Buffer.isBuffer(p) && p.length >= 8) return p.readUInt32LE(0);
  if (typeof p === 'number') return p;
  if (typeof p === 'string') return Number(p.slice(0, p.indexOf(':')));
  if (p && typeof p === 'object' && typeof (p as { seq?: unknown }).seq === 'number') return (p as { seq: number }).seq;
  return typeof msg.seq === 'number' ? msg.seq : undefined;
}

function sizeOf(p: unknown): number {
  if (Buffer.isBuffer(p)) return p.length;
  if (typeof p === 'string') return p.length;
  return 8;
}

export = (RED: NodeAPI) => {
  function SeqSink(this: Node, def: SinkDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const expect = Number(def.expect);
    const busy = Number(def.busyMicros) || 0;
    const killAt = Number(def.killAt) || 0;
    const report: SinkReport = { label: def.label || node.id, count: 0, bytes: 0, firstAt: 0, lastAt: 0, outOfOrder: 0, seqSum: 0, duplicates: 0, types: {}, done: false };
    const increasing = def.ordering === 'increasing';
    const seen = def.ordering === 'any' ? new Set<number>() : undefined;
    let expected = 0;
    const send = () => {
      const line = { event: 'sink', ...report };
      if (process.send && process.connected) process.send(line);
      if (def.reportFile) {
        // Write then rename: a reader polling the file never sees half of it.
        const fs = require('fs');
        fs.writeFileSync(`${def.reportFile}.tmp`, JSON.stringify(line));
        fs.renameSync(`${def.reportFile}.tmp`, def.reportFile);
      }
    };
    const progress = setInterval(send, 500);
    const fs = require('fs') as typeof import('fs');
    const logFd = def.logFile ? fs.openSync(def.logFile, 'a') : undefined;
    const seqBuf = Buffer.alloc(4);
    node.on('input', (msg: Record<string, unknown>, _send: unknown, done: () => void) => {
      const now = Date.now();
      if (report.count === 0) report.firstAt = now;
      report.lastAt = now;
      report.count++;
      report.bytes += sizeOf(msg.payload);
      const t = Buffer.isBuffer(msg.payload) ? 'buffer' : msg.payload === null ? 'null' : typeof msg.payload;
      report.types[t] = (report.types[t] ?? 0) + 1;
      const seq = seqOf(msg);
      if (seen) {
        if (seq !== undefined && seen.has(seq)) report.duplicates++;
        if (seq !== undefined) seen.add(seq);
      } else if (increasing ? seq === undefined || seq < expected : seq !== expected) {
        report.outOfOrder++;
        report.firstProblem ??= `expected ${increasing ? 'at least ' : ''}${expected}, got ${String(seq)} at message ${report.count}`;
      }
      expected = (seq ?? expected) + 1;
      report.seqSum += seq ?? 0;
      if (busy > 0) {
        const until = process.hrtime.bigint() + BigInt(busy * 1000);
        while (process.hrtime.bigint() < until);
      }
      if (report.count === killAt) process.kill(process.pid, 'SIGKILL');
      // The work first, then its effect (the log line), then done(): a sink killed during the work
      // has no effect of that message, as a real one that writes its result last.
      if (logFd !== undefined) {
        seqBuf.writeUInt32LE(seq ?? 0xffffffff, 0);
        fs.writeSync(logFd, seqBuf);
      }
      if (report.count === expect) {
        report.done = true;
        send();
      }
      done();
    });
    node.on('close', () => {
      clearInterval(progress);
      if (logFd !== undefined) fs.closeSync(logFd);
    });
  }
  RED.nodes.registerType('seq-sink', SeqSink);
};
