import assert from 'assert';
import { ChildProcess, fork } from 'child_process';
import fs from 'fs';
import path from 'path';
import { requireSystem } from './support/system';
import { hasEfaDevice } from './support/libfabric';

/**
 * libfabric RDM endpoints through koffi, with real libfabric (tcp and shm providers). All native
 * work happens in child processes (support/fabric-peer.js): a SIGSEGV from a wrong offset fails
 * the test with the signal named instead of killing mocha.
 */

const PEER = path.join(__dirname, 'support', 'fabric-peer.js');
const INSTALL = 'apt-get install libfabric1';

function hasLibfabric(): boolean {
  return ['/usr/lib/x86_64-linux-gnu/libfabric.so.1', '/opt/amazon/efa/lib64/libfabric.so.1', '/opt/amazon/efa/lib/libfabric.so.1'].some((p) =>
    fs.existsSync(p),
  ) || !!process.env.SPAWN_LIBFABRIC;
}

type Reply = Record<string, unknown> & { error?: string; address?: string };

/** A peer child with a queue of its replies; rejects on crash (naming the signal) or error. */
function peer(env: NodeJS.ProcessEnv = process.env) {
  const child: ChildProcess = fork(PEER, [], { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const replies: Reply[] = [];
  const waiters: ((r: Reply) => void)[] = [];
  let died: Error | undefined;
  const failers: ((e: Error) => void)[] = [];
  child.on('message', (m: Reply) => (waiters.length ? waiters.shift()!(m) : replies.push(m)));
  child.on('exit', (code, signal) => {
    if (signal || code) {
      died = new Error(`fabric peer died: ${signal ? `killed by ${signal}` : `exit code ${code}`}`);
      failers.splice(0).forEach((f) => f(died!));
    }
  });
  return {
    child,
    send: (m: object) => child.send(m),
    next: (): Promise<Reply> =>
      new Promise((resolve, reject) => {
        if (replies.length) return resolve(replies.shift()!);
        if (died) return reject(died);
        waiters.push(resolve);
        failers.push(reject);
      }),
    // SIGKILL: a peer may be inside libfabric, and a test peer has nothing to flush.
    kill: () => child.kill('SIGKILL'),
  };
}

function ok(r: Reply): Reply {
  if (r.error) throw new Error(r.error);
  return r;
}

describe('fabric endpoint (libfabric through koffi)', function () {
  this.timeout(60_000);
  const kids: ReturnType<typeof peer>[] = [];
  const spawnPeer = (env?: NodeJS.ProcessEnv) => {
    const p = peer(env);
    kids.push(p);
    return p;
  };
  afterEach(() => kids.splice(0).forEach((k) => k.kill()));

  it('says where it looked and how to install when libfabric is missing', async function () {
    const p = spawnPeer({ ...process.env, SPAWN_LIBFABRIC: '/nonexistent/libfabric.so.1' });
    p.send({ role: 'open', provider: 'tcp', count: 0, size: 0, depth: 1 });
    const r = await p.next();
    assert.match(String(r.error), /^libfabric is not installed: looked in \/nonexistent\/libfabric\.so\.1 \(.*No such file or directory\)/);
    assert.match(String(r.error), /apt-get install libfabric1/);
  });

  it('says "provider efa not available: no EFA device" on a machine without EFA', async function () {
    if (hasEfaDevice()) this.skip(); // the no-EFA behaviour is for machines without one
    requireSystem(this, 'libfabric', hasLibfabric(), INSTALL);
    const p = spawnPeer();
    p.send({ role: 'open', provider: 'efa', count: 0, size: 0, depth: 1 });
    const r = await p.next();
    assert.strictEqual(r.error, 'provider efa not available: no EFA device (fi_getinfo: No data available)');
    assert.strictEqual(r.code, 61);
  });

  it("tcp: an endpoint given a local address (its side channel's, in a stream) has its fabric address there", async function () {
    requireSystem(this, 'libfabric', hasLibfabric(), INSTALL);
    const p = spawnPeer();
    p.send({ role: 'open', provider: 'tcp', count: 0, size: 0, depth: 1 });
    const addr = Buffer.from(String(ok(await p.next()).address), 'base64');
    // struct sockaddr_in: family AF_INET (2), port, then the IPv4 address
    assert.strictEqual(addr.readUInt16LE(0), 2, `an IPv4 address: ${addr.toString('hex')}`);
    assert.deepStrictEqual([...addr.subarray(4, 8)], [127, 0, 0, 1]);
  });

  for (const provider of ['tcp', 'shm'] as const) {
    it(`${provider}: 1,000 × 64 KiB between two processes arrive complete, in order, byte-identical`, async function () {
      requireSystem(this, 'libfabric', hasLibfabric(), INSTALL);
      const job = { provider, count: 1000, size: 64 * 1024, depth: 16 };
      const rx = spawnPeer();
      const tx = spawnPeer();
      rx.send({ role: 'recv', ...job });
      tx.send({ role: 'send', ...job });
      const [rxHello, txHello] = [ok(await rx.next()), ok(await tx.next())];
      // Fabric addresses exchanged directly over IPC (the TCP side channel comes later).
      rx.send({ peer: txHello.address });
      tx.send({ peer: rxHello.address });
      const [got, sent] = await Promise.all([rx.next().then(ok), tx.next().then(ok)]);
      assert.strictEqual(got.received, job.count);
      assert.strictEqual(got.wrongSize, 0, 'messages of the wrong length');
      assert.strictEqual(got.outOfOrder, 0, 'messages out of order');
      assert.strictEqual(got.hash, sent.hash, 'payload checksum differs');
      const mbps = (job.count * job.size) / 1e6 / ((sent.ms as number) / 1000);
      console.log(
        `      ${rxHello.providerName}: ${mbps.toFixed(0)} MB/s (64 KiB, ${job.depth} in flight, ${(sent.ms as number).toFixed(0)} ms, ${sent.eagain} × -FI_EAGAIN on send)`,
      );
    });
  }
});
