import { strict as assert } from 'assert';
import * as net from 'net';
import { StreamError } from '../native/errors';
import { openReliableFabricOut } from '../native/delivery/fabric-links';
import { FabricStream, openFabricOut } from '../native/fabric/stream';
import { hasLibfabric, LIBFABRIC_INSTALL } from './support/libfabric';
import { freePort } from './support/ports';
import { fabricRecorder } from './support/fabric-recorder';
import { requireSystem } from './support/system';

/**
 * The output side's user-facing failures over real libfabric (tcp provider), in this process:
 * a side-channel port that is taken (EADDRINUSE, retried until free) and messages waiting with no
 * receiver (ENOPEER), both through native/peer-watch.ts as the ZeroMQ and QUIC streams.
 */

const outConfig = (port: number, noPeerMs = 5000, highWater = 100) => ({
  provider: 'tcp' as const,
  format: 'spawn' as const,
  maxMessageSize: 0,
  host: '127.0.0.1',
  port,
  highWater,
  queueLimit: 1000,
  batch: true,
  noPeerMs,
});

describe('rdma out: taken port and no receiver (tcp provider)', function () {
  this.timeout(30_000);
  let stream: FabricStream | undefined;
  let holder: net.Server | undefined;
  beforeEach(function () {
    requireSystem(this, 'libfabric', hasLibfabric(), LIBFABRIC_INSTALL);
  });
  afterEach(async () => {
    await stream?.close(0);
    stream = undefined;
    await new Promise<void>((r) => (holder ? holder.close(() => r()) : r()));
    holder = undefined;
  });

  it('a taken side-channel port: EADDRINUSE naming the address, red status, then listens once the port is free', async function () {
    const port = await freePort();
    holder = net.createServer();
    await new Promise<void>((r) => holder!.listen(port, '127.0.0.1', () => r()));
    const rec = fabricRecorder(10_000);
    stream = openFabricOut(outConfig(port), rec.handlers);
    const taken = await rec.problem('EADDRINUSE');
    assert.equal(taken.message, `cannot bind 127.0.0.1:${port}: address already in use (another node or program listens on that port); retrying`);
    await rec.status((s) => s.state === 'error' && s.text === taken.message, 'a red status');
    await new Promise<void>((r) => holder!.close(() => r()));
    holder = undefined;
    await rec.status((s) => s.state === 'connecting' && s.text === `tcp;ofi_rxm: waiting for receivers on 127.0.0.1:${port}`, 'waiting for receivers');
  });

  it('messages waiting with no receiver: ENOPEER naming the address and the count; close reports them undelivered', async function () {
    const port = await freePort();
    const rec = fabricRecorder(10_000);
    stream = openFabricOut(outConfig(port, 400), rec.handlers);
    await rec.status((s) => s.text.includes('waiting for receivers'), 'listening');
    const failed: Array<Error | undefined> = [];
    for (let i = 0; i < 3; i++) stream.send(`m${i}`, undefined, undefined, (err) => failed.push(err));
    const none = await rec.problem('ENOPEER');
    assert.match(none.message, new RegExp(`^no peer connected to 127\\.0\\.0\\.1:${port} after 0 s; 3 messages wait; still trying$`));
    const s = stream;
    stream = undefined;
    assert.equal(await s.close(0), 3);
    assert.equal(failed.length, 3);
    assert.ok(failed.every((e) => e instanceof StreamError && e.code === 'ECLOSED'));
  });

  it('exactly-once with no receiver: one Sender applies the high-water mark, ENOPEER counts what waits, close fails them', async function () {
    const port = await freePort();
    const rec = fabricRecorder(10_000);
    stream = openReliableFabricOut({ ...outConfig(port, 400, 2), batch: false }, rec.handlers);
    await rec.status((s) => s.text.includes('waiting for receivers'), 'listening');
    const failed: Array<Error | undefined> = [];
    for (let i = 0; i < 6; i++) stream.send(`m${i}`, undefined, undefined, (err) => failed.push(err));
    // The third message is over the high-water mark of 2: backpressure reaches the node's handlers.
    assert.deepEqual(rec.backpressure, [[true, 3]]);
    const none = await rec.problem('ENOPEER');
    assert.match(none.message, new RegExp(`^no peer connected to 127\\.0\\.0\\.1:${port} after 0 s; 6 messages wait; still trying$`));
    assert.equal(stream.stats().queued, 6);
    const s = stream;
    stream = undefined;
    await s.close(0);
    assert.equal(failed.length, 6);
    assert.ok(failed.every((e) => e instanceof StreamError && e.code === 'ECLOSED'), failed.map(String).join(', '));
  });
});
