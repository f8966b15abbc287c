import type { Node, NodeAPI, NodeDef } from 'node-red';

/**
 * Test and benchmark node: emits `count` sequence-numbered messages. Compiled code, not a function
 * node, so that the generator is not the bottleneck being measured. With `window` > 0 it keeps at
 * most that many messages not yet completed (done() called by the node they went to), the way a
 * well-behaved producer respects downstream backpressure.
 */
interface SourceDef extends NodeDef {
  count: number | string;
  size: number | string;
  kind: 'buffer' | 'string' | 'number' | 'object';
  window?: number | string;
  startDelay?: number | string;
  /** Start once this file exists (a test creates it when every consumer is connected). */
  startFile?: string;
  chunk?: number | string;
}

function makePayload(kind: SourceDef['kind'], seq: number, size: number, template?: Buffer): unknown {
  switch (kind) {
    case 'number':
      return seq;
    case 'string':
      return `${seq}:`.padEnd(size, 'x');
    case 'object':
      return { seq, pad: 'x'.repeat(Math.max(0, size - 20)) };
    default: {
      // One template per size: only the sequence number differs, so large payloads cost no fill time.
      const b = Buffer.allocUnsafe(Math.max(8, size));
      template!.copy(b, 8, 8);
      b.writeUInt32LE(seq, 0);
      b.writeUInt32LE(~seq >>> 0, 4);
      return b;
    }
  }
}

export = (RED: NodeAPI) => {
  function SeqSource(this: Node, def: SourceDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const count = Number(def.count);
    const size = Number(def.size) || 100;
    const window = Number(def.window) || 0;
    const chunk = Number(def.chunk) || 1000;
    const template = Buffer.alloc(Math.max(8, size), 0x5a);
    let next = 0;
    let completed = 0;
    let stopped = false;
    const hookName = `onComplete.seqsrc${node.id.replace(/[^A-Za-z0-9]/g, '')}`;
    if (window > 0) {
      RED.hooks.add(hookName, (ev: { msg: Record<string, unknown> }) => {
        if (ev.msg._seqsrc === node.id) {
          completed++;
          if (!pumping) setImmediate(pump);
        }
      });
    }
    let pumping = false;
    function pump() {
      if (stopped) return;
      pumping = true;
      let sent = 0;
      while (next < count && sent < chunk && (window === 0 || next - completed < window)) {
        const msg: Record<string, unknown> = { payload: makePayload(def.kind, next, size, template), seq: next };
        if (window > 0) msg._seqsrc = node.id;
        node.send(msg);
        next++;
        sent++;
      }
      pumping = false;
      node.status({ text: `${next}/${count}` });
      if (next < count && (window === 0 || next - completed < window)) setImmediate(pump);
    }
    const startWhenReady = () => {
      if (!def.startFile || require('fs').existsSync(def.startFile)) pump();
      else timer = setTimeout(startWhenReady, 20);
    };
    let timer = setTimeout(startWhenReady, Number(def.startDelay) || 0);
    node.on('input', () => pump());
    node.on('close', () => {
      stopped = true;
      clearTimeout(timer);
      if (window > 0) RED.hooks.remove(hookName);
    });
  }
  RED.nodes.registerType('seq-source', SeqSource);
};
