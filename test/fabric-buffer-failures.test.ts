import { strict as assert } from 'assert';
import { ChildProcess, fork } from 'child_process';
import path from 'path';
import { StreamError } from '../native/errors';
import { Endpoint, EndpointOptions, openEndpoint, Provider } from '../native/fabric/endpoint';
import { FabricError } from '../native/fabric/lib';
import { FabricStream, openFabricIn, openFabricOut } from '../native/fabric/stream';
import { hasLibfabric, LIBFABRIC_INSTALL } from './support/libfabric';
import { freePort } from './support/ports';
import { fabricRecorder } from './support/fabric-recorder';
import { requireSystem } from './support/system';

/**
 * Buffer registration failing (fi_mr_reg: only providers that need registered buffers, efa, can
 * fail there) on the real tcp provider: the endpoints are real, and a test-only wrapper given as
 * `openEndpoint` makes allocBuffer throw what fi_mr_reg would. The streams must close what they
 * opened and report through handlers.problem, naming the address and the provider, never throw
 * out of a socket callback (which would crash Node-RED).
 */

const PEER = path.join(__dirname, 'support', 'fabric-stream-peer.js');
const PROVIDER = 'tcp;ofi_rxm';

/** Opens real endpoints whose allocBuffer throws while `failing()`; records them and whether they were closed. */
function registrationFails(failing: () => boolean) {
  const opened: Array<{ ep: Endpoint; closed: boolean }> = [];
  const open = (provider: Provider, options: EndpointOptions): Endpoint => {
    const ep = openEndpoint(provider, options);
    const entry = { ep, closed: false };
    opened.push(entry);
    const alloc = ep.allocBuffer.bind(ep);
    ep.allocBuffer = (bytes) => {
      if (failing()) throw new FabricError('fi_mr_reg', -12, 'fi_mr_reg: Cannot allocate memory (made to fail by the test)');
      return alloc(bytes);
    };
    const close = ep.close.bind(ep);
    ep.close = () => {
      entry.closed = true;
      close();
    };
    return ep;
  };
  return { open, opened };
}

const common = { provider: 'tcp' as const, format: 'spawn' as const, maxMessageSize: 0 };
const outConfig = (port: number) => ({ ...common, host: '127.0.0.1', port, highWater: 1000, queueLimit: 10_000, batch: true });
const inConfig = (port: number) => ({ ...common, connect: [{ host: '127.0.0.1', port }], reconnectMs: 100 });

describe('fabric streams when buffer registration fails (tcp provider, fi_mr_reg made to fail)', function () {
  this.timeout(30_000);
  const streams: FabricStream[] = [];
  const kids: ChildProcess[] = [];
  beforeEach(function () {
    requireSystem(this, 'libfabric', hasLibfabric(), LIBFABRIC_INSTALL);
  });
  afterEach(async () => {
    kids.splice(0).forEach((k) => k.kill('SIGKILL'));
    await Promise.all(streams.splice(0).map((s) => s.close(0)));
  });

  it('rdma out: its send buffers cannot be registered: throws EFABRIC naming the address and provider, and closes its endpoint', async function () {
    const port = await freePort();
    let made = 0;
    const reg = registrationFails(() => ++made > 5); // the sixth of sixteen fails
    const rec = fabricRecorder(20_000);
    assert.throws(
      () => streams.push(openFabricOut({ ...outConfig(port), openEndpoint: reg.open }, rec.handlers)),
      (e: unknown) =>
        e instanceof StreamError &&
        e.code === 'EFABRIC' &&
        e.message === `rdma out on 127.0.0.1:${port}: cannot register its send buffers with provider ${PROVIDER}: fi_mr_reg: Cannot allocate memory (made to fail by the test)`,
    );
    assert.equal(reg.opened.length, 1);
    assert.ok(reg.opened[0].closed, 'the endpoint was closed');
  });

  it('efa in: receive buffers cannot be registered when it connects: EFABRIC naming the sender and provider, then it connects again once they can', async function () {
    const port = await freePort();
    const outRec = fabricRecorder(20_000);
    const out = openFabricOut(outConfig(port), outRec.handlers);
    streams.push(out);
    await outRec.status((s) => s.text.includes('waiting for receivers'), 'rdma out listening');
    let failing = true;
    const reg = registrationFails(() => failing);
    const inRec = fabricRecorder(20_000);
    streams.push(openFabricIn({ ...inConfig(port), openEndpoint: reg.open }, inRec.handlers));
    const e = await inRec.problem((x) => x.code === 'EFABRIC', 'the registration failure');
    assert.equal(
      e.message,
      `efa in connecting to rdma out at 127.0.0.1:${port}: cannot register receive buffers with provider ${PROVIDER} (fi_mr_reg: Cannot allocate memory (made to fail by the test)); closing the connection; retrying`,
    );
    failing = false;
    await inRec.status((s) => s.state === 'ready', 'efa in ready once buffers register');
    out.send('after', undefined, undefined, () => undefined);
    await inRec.message('after');
    assert.equal(inRec.problems.filter((x) => x.code === 'EFABRIC').length, 1, 'reported once, not at every retry');
  });

  it('rdma out: a receiver goes away holding send buffers that cannot be replaced: EFABRIC, no crash, and the stream goes on', async function () {
    const port = await freePort();
    let failing = false;
    const reg = registrationFails(() => failing);
    const rec = fabricRecorder(20_000);
    // Every chunk copied into a send buffer (the buffers a receiver that goes away holds).
    process.env.SPAWN_FABRIC_COPY = '1';
    let out: FabricStream;
    try {
      out = openFabricOut({ ...outConfig(port), openEndpoint: reg.open }, rec.handlers);
    } finally {
      delete process.env.SPAWN_FABRIC_COPY;
    }
    await rec.status((s) => s.text.includes('waiting for receivers'), 'rdma out listening');
    const child = fork(PEER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    kids.push(child);
    child.send({ role: 'in', provider: 'tcp', ports: [port] });
    await rec.status((s) => s.state === 'ready', 'the receiver connected');
    // A first message sets up the provider's connection (rxm connects on the first send, which needs the
    // receiver); the peer tallies payloads of 8 bytes or more.
    await new Promise<void>((resolve, reject) => out.send(Buffer.alloc(16), undefined, undefined, (err) => (err ? reject(err) : resolve())));
    await new Promise<void>((resolve) => child.on('message', (m: { tally?: boolean }) => m.tally && resolve()));
    // A stopped receiver completes nothing: the chunks sent to it stay in flight, in their buffers.
    child.kill('SIGSTOP');
    // Each send completes once all its chunks are posted to the fabric.
    await Promise.all(Array.from({ length: 4 }, (_, i) => new Promise<void>((resolve, reject) => out.send(Buffer.alloc(1 << 20, i), undefined, undefined, (err) => (err ? reject(err) : resolve())))));
    failing = true;
    child.kill('SIGKILL');
    const e = await rec.problem((x) => x.code === 'EFABRIC', 'the registration failure');
    assert.match(e.message, new RegExp(`^rdma out on 127\\.0\\.0\\.1:${port}: cannot register send buffers with provider tcp;ofi_rxm \\(fi_mr_reg: Cannot allocate memory \\(made to fail by the test\\)\\) in place of the [1-4] buffers? a receiver that went away still holds; going on with fewer until they come back$`));
    failing = false;
    const inRec = fabricRecorder(20_000);
    streams.push(openFabricIn(inConfig(port), inRec.handlers));
    await inRec.status((s) => s.state === 'ready', 'a new receiver connected');
    out.send('after', undefined, undefined, () => undefined);
    await inRec.message('after');
    // Sends stuck with the SIGKILLed receiver keep the tcp provider's domain busy (rxm never
    // completes them): closing says so, and keeps their memory, instead of failing.
    await out.close(0);
    const busy = await rec.problem((x) => x.message.includes('closed:'), 'the report of the busy domain');
    assert.match(busy.message, new RegExp(`^rdma out on 127\\.0\\.0\\.1:${port} closed: the tcp;ofi_rxm provider still holds [1-9]\\d* operations? it never completed \\(sends to a peer that went away\\): its domain stays open, and their buffers allocated, until the process exits \\(fi_close\\(domain\\): Device or resource busy \\(-16\\)\\)$`));
  });
});
