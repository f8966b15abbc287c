import * as dgram from 'dgram';
import * as fs from 'fs';
import * as net from 'net';

/**
 * A loopback port that nothing uses right now, for TCP and UDP both (QUIC listens on UDP, and a
 * node with transport auto binds the same number for both).
 *
 * Chosen below the kernel's ephemeral range: a port the kernel picked from that range (listen on
 * port 0) can be taken again by any outgoing connection's local end before the test binds it. A
 * test saw exactly that: "cannot bind tcp://127.0.0.1:42691: address already in use".
 */
export async function freePort(): Promise<number> {
  const [low] = ephemeralRange();
  const first = 10_000;
  if (low - first < 1000) return kernelPort(); // no room below the range: fall back
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = first + Math.floor(Math.random() * (low - first));
    if (handedOut.has(port)) continue;
    if ((await tcpFree(port)) && (await udpFree(port))) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free loopback port found between ${first} and ${low}`);
}

/** Ports already given in this process: a test may ask for two before it binds either. */
const handedOut = new Set<number>();

function ephemeralRange(): [number, number] {
  try {
    const [low, high] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low, high];
  } catch {
    // not Linux: assume the IANA range
  }
  return [49152, 65535];
}

function tcpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

function udpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    sock.once('error', () => {
      sock.close();
      resolve(false);
    });
    sock.bind(port, '127.0.0.1', () => sock.close(() => resolve(true)));
  });
}

function kernelPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}
