import * as path from 'path';

/**
 * The quiche binding that ships inside @matrixai/quic (dist/native). The package is ESM only and
 * its public classes are slow (see shared measured facts), so spawn-red drives the binding itself.
 * dist/native/quiche.js picks the right prebuilt binary for the platform; on Node >= 20.19 a
 * CommonJS require of an ES module works, which is how it is loaded here.
 */

export interface HostPort {
  host: string;
  port: number;
}

export interface QuicheConfig {
  verifyPeer(verify: boolean): void;
  setTicketKey(key: Uint8Array): void;
  enableEarlyData(): void;
  setApplicationProtos(protos: string[]): void;
  setMaxIdleTimeout(ms: number): void;
  setMaxRecvUdpPayloadSize(n: number): void;
  setMaxSendUdpPayloadSize(n: number): void;
  setInitialMaxData(n: number): void;
  setInitialMaxStreamDataBidiLocal(n: number): void;
  setInitialMaxStreamDataBidiRemote(n: number): void;
  setInitialMaxStreamDataUni(n: number): void;
  setInitialMaxStreamsBidi(n: number): void;
  setInitialMaxStreamsUni(n: number): void;
  setDisableActiveMigration(v: boolean): void;
  setCcAlgorithmName(name: string): void;
  enablePacing(v: boolean): void;
  setMaxStreamWindow(n: number): void;
  setMaxConnectionWindow(n: number): void;
  grease(v: boolean): void;
}

export interface ConnectionError {
  isApp: boolean;
  errorCode: number;
  reason: Uint8Array;
}

export interface QuicheConnection {
  setSession(session: Uint8Array): void;
  recv(data: Uint8Array, info: { from: HostPort; to: HostPort }): number;
  send(data: Uint8Array): [number, { from: HostPort; to: HostPort }] | null;
  sendQuantum(): number;
  streamRecv(id: number, data: Uint8Array): [number, boolean] | null;
  streamSend(id: number, data: Uint8Array, fin: boolean): number | null;
  streamCapacity(id: number): number;
  readable(): Iterable<number>;
  timeout(): number | null;
  onTimeout(): void;
  close(app: boolean, err: number, reason: Uint8Array): void | null;
  session(): Uint8Array | null;
  isEstablished(): boolean;
  isResumed(): boolean;
  isInEarlyData(): boolean;
  isClosed(): boolean;
  isTimedOut(): boolean;
  isDraining(): boolean;
  peerError(): ConnectionError | null;
  localError(): ConnectionError | null;
  stats(): { sent: number; recv: number; lost: number; retrans: number; sentBytes: number; recvBytes: number };
}

export interface QuicheHeader {
  ty: number;
  version: number;
  dcid: Uint8Array;
  scid: Uint8Array;
}

export interface Quiche {
  Config: {
    withBoringSslCtx(verifyPeer: boolean, verifyAllowFail: boolean, ca?: Uint8Array | null, key?: Uint8Array[] | null, cert?: Uint8Array[] | null, sigalgs?: string | null): QuicheConfig;
  };
  Connection: {
    connect(serverName: string | null, scid: Uint8Array, local: HostPort, remote: HostPort, config: QuicheConfig): QuicheConnection;
    accept(scid: Uint8Array, odcid: Uint8Array | null, local: HostPort, remote: HostPort, config: QuicheConfig): QuicheConnection;
  };
  Header: { fromSlice(data: Uint8Array, dcidLen: number): QuicheHeader };
  negotiateVersion(scid: Uint8Array, dcid: Uint8Array, out: Uint8Array): number;
  versionIsSupported(version: number): boolean;
  Type: { Initial: number; ZeroRTT: number };
  MAX_CONN_ID_LEN: number;
  MAX_DATAGRAM_SIZE: number;
  CRYPTO_ERROR_START: number;
  CRYPTO_ERROR_STOP: number;
}

let loaded: Quiche | undefined;

export function quiche(): Quiche {
  if (loaded) return loaded;
  const pkgDir = path.dirname(require.resolve('@matrixai/quic/package.json'));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(path.join(pkgDir, 'dist', 'native', 'quiche.js')) as { default: Quiche };
  loaded = mod.default;
  return loaded;
}
