import * as zmq from 'zeromq';

/**
 * Benchmark child: plain zeromq.js PUSH → PULL, the baseline spawn-red is compared with.
 * Forked by bench/run.ts, once per role:
 *
 *   node dist/bench/zmq-raw.js send <endpoint> <count> <size>   binds a PUSH socket, sends
 *   node dist/bench/zmq-raw.js recv <endpoint> <count> <size>   connects a PULL socket, counts
 *
 * Both do what seq-source and seq-sink do on the spawn-red side, so the work per message
 * matches: the sender allocates each payload and writes a sequence number into it; the receiver
 * checks the sequence and counts messages and bytes. One message per `send`, each awaited: the
 * normal zeromq.js usage. The receiver reports to the parent over IPC, with the same timing
 * method as seq-sink (Date.now() at the first and at the last message).
 */

interface RawReport {
  event: 'done';
  count: number;
  bytes: number;
  firstAt: number;
  lastAt: number;
  outOfOrder: number;
  firstProblem?: string;
}

function tell(m: object): Promise<void> {
  return new Promise((resolve) => {
    if (process.send && process.connected) process.send(m, undefined, {}, () => resolve());
    else resolve();
  });
}

async function send(endpoint: string, count: number, size: number): Promise<void> {
  // Forked: wait for the parent's stop. Run by hand: close once sent (linger flushes the rest).
  const stopped = new Promise<void>((resolve) => {
    if (!process.send) return resolve();
    process.on('message', (m: { cmd?: string }) => m.cmd === 'stop' && resolve());
    process.on('disconnect', () => resolve());
  });
  const sock = new zmq.Push({ linger: 5000 });
  let peered!: () => void;
  const peer = new Promise<void>((r) => (peered = r));
  sock.events.on('handshake', () => peered());
  await sock.bind(endpoint);
  await tell({ event: 'ready' });
  // Start once the receiver's connection is up, as the spawn-red producer does (startDelay).
  await peer;
  const template = Buffer.alloc(Math.max(8, size), 0x5a);
  for (let seq = 0; seq < count; seq++) {
    const b = Buffer.allocUnsafe(Math.max(8, size));
    template.copy(b, 8, 8);
    b.writeUInt32LE(seq, 0);
    b.writeUInt32LE(~seq >>> 0, 4);
    await sock.send(b);
  }
  await tell({ event: 'sent', count });
  // Stay up until the parent has seen the receiver finish (the socket's linger covers the rest).
  await stopped;
  sock.close();
}

async function recv(endpoint: string, count: number): Promise<void> {
  const sock = new zmq.Pull();
  sock.connect(endpoint);
  await tell({ event: 'ready' });
  const report: RawReport = { event: 'done', count: 0, bytes: 0, firstAt: 0, lastAt: 0, outOfOrder: 0 };
  let expected = 0;
  while (report.count < count) {
    const [msg] = await sock.receive();
    const now = Date.now();
    if (report.count === 0) report.firstAt = now;
    report.lastAt = now;
    report.count++;
    report.bytes += msg.length;
    const seq = msg.length >= 8 ? msg.readUInt32LE(0) : -1;
    if (seq !== expected) {
      report.outOfOrder++;
      report.firstProblem ??= `expected ${expected}, got ${seq} at message ${report.count}`;
    }
    expected = seq + 1;
  }
  sock.close();
  await tell(report);
}

async function main(): Promise<void> {
  const [role, endpoint, countText, sizeText] = process.argv.slice(2);
  const count = Number(countText);
  const size = Number(sizeText);
  if (!endpoint || !(count > 0) || !(size > 0)) throw new Error('usage: zmq-raw.js send|recv <endpoint> <count> <size>');
  if (role === 'send') await send(endpoint, count, size);
  else if (role === 'recv') await recv(endpoint, count);
  else throw new Error(`unknown role ${role}`);
}

main().then(
  () => {
    // Reports were flushed (tell awaits the IPC write); nothing else is left to do.
    // Forked: exit now. Run by hand: let the process end by itself once ZeroMQ's linger is over.
    if (process.connected) {
      process.disconnect();
      process.exit(0);
    }
  },
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
