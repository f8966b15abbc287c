import * as fs from 'fs';
import * as path from 'path';
import * as zmq from 'zeromq';
import { errorText, StreamError } from './errors';

/**
 * CurveZMQ for the ZeroMQ transport: every connection of a pipeline is encrypted and authenticated
 * with the pipeline's key pair (made by the launcher per pipeline, or per runtime for a local
 * editor run). The side that binds is the CURVE server; the side that connects is a client that
 * knows the server's public key, and presents the pipeline's key pair as its own. A ZAP handler
 * in this process admits a client only when its public key is the pipeline's: a peer with another
 * key (or none) can neither connect nor inject anything.
 *
 * The public key travels in the peer-discovery file (`curve_public_key`; spawn's readers ignore
 * unknown fields). The secret key lives only in a file of mode 0600 (the instance's state dir, or
 * the Node-RED user dir), named by SPAWN_CURVE_KEYS; never in a flow, an export or a log line.
 */

export interface CurveKeys {
  /** Z85, 40 characters. */
  publicKey: string;
  secretKey: string;
}

export class CurveKeyError extends Error {}

/** The ZAP domain of encrypted sockets; other sockets keep theirs and are admitted as before. */
export const CURVE_ZAP_DOMAIN = 'spawn-red-curve';
const Z85 = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

export function makeKeys(): CurveKeys {
  return zmq.curveKeyPair();
}

/** Writes a key file readable by its owner only (0600), creating its directory if needed. */
export function writeKeyFile(file: string, keys: CurveKeys): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify({ publicKey: keys.publicKey, secretKey: keys.secretKey }), { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}

/** Reads a key file; the error names the file and what is wrong, never the key. */
export function readKeyFile(file: string): CurveKeys {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CurveKeyError(`CurveZMQ key file ${file} cannot be read: ${(e as Error).message}`);
  }
  const k = raw as Partial<CurveKeys>;
  if (!k || typeof k.publicKey !== 'string' || !Z85.test(k.publicKey) || typeof k.secretKey !== 'string' || !Z85.test(k.secretKey)) {
    throw new CurveKeyError(`CurveZMQ key file ${file} must hold {"publicKey","secretKey"}, each 40 Z85 characters`);
  }
  const mode = fs.statSync(file).mode & 0o077;
  if (mode !== 0) throw new CurveKeyError(`CurveZMQ key file ${file} is readable by others (mode ${(fs.statSync(file).mode & 0o777).toString(8)}); it must be 0600`);
  return { publicKey: k.publicKey, secretKey: k.secretKey };
}

/**
 * The pipeline's keys: SPAWN_CURVE_KEYS names the file (the launcher sets it), else `fallbackFile`
 * is used, made on first use (a local editor run: one key pair for the runtime's whole flow).
 */
export function pipelineKeys(env: NodeJS.ProcessEnv, fallbackFile: string | undefined): CurveKeys {
  const file = env.SPAWN_CURVE_KEYS || fallbackFile;
  if (!file) throw new CurveKeyError('encryption is on but no CurveZMQ key file is given (SPAWN_CURVE_KEYS)');
  if (!env.SPAWN_CURVE_KEYS && !fs.existsSync(file)) writeKeyFile(file, makeKeys());
  return readKeyFile(file);
}

/** Socket options for one side of an encrypted connection. */
export function curveSocketOptions(keys: CurveKeys, binds: boolean): Record<string, unknown> {
  ensureZapHandler();
  allowed.add(keys.publicKey);
  return binds
    ? { curveServer: true, curvePublicKey: keys.publicKey, curveSecretKey: keys.secretKey, zapDomain: CURVE_ZAP_DOMAIN }
    : { curveServerKey: keys.publicKey, curvePublicKey: keys.publicKey, curveSecretKey: keys.secretKey };
}

/**
 * CurveZMQ failures, reported clearly: a client refused by this server (its key is not the
 * pipeline's), or a server whose key is not the one this client expects.
 */
export function watchCurve(
  events: zmq.Observer,
  where: string,
  cfg: { curve?: CurveKeys; bind: string[] },
  settled: () => void,
  handlers: { problem(err: StreamError): void },
): void {
  if (!cfg.curve) return;
  events.on('handshake:error:auth', (ev) => {
    settled();
    handlers.problem(new StreamError('EAUTH', `refused a peer on ${ev.address}: its CurveZMQ key is not this pipeline's (status ${ev.error.status ?? '?'}); connection dropped`));
  });
  if (cfg.bind.length === 0) {
    const failed = (ev: { address: string; error: Error }) =>
      handlers.problem(
        new StreamError('EAUTH', `the encrypted handshake with ${ev.address} failed (${errorText(ev.error)}): the peer does not use this pipeline's CurveZMQ key, or no encryption`),
      );
    events.on('handshake:error:protocol', failed);
    events.on('handshake:error:other', failed);
  }
}

// ---- ZAP (ZeroMQ's authentication protocol, RFC 27): one handler per process ----

const allowed = new Set<string>();
let zap: zmq.Reply | undefined;

function ensureZapHandler(): void {
  if (zap) return;
  zap = new zmq.Reply({ linger: 0 });
  // Bound synchronously enough: libzmq asks the handler only when a peer connects, later than this.
  void zap.bind('inproc://zeromq.zap.01').then(() => serve(zap!));
}

async function serve(sock: zmq.Reply): Promise<void> {
  for (;;) {
    let req: Buffer[];
    try {
      req = await sock.receive();
    } catch {
      return; // closed
    }
    const [version, requestId, domain, , , mechanism, ...credentials] = req;
    let ok = true;
    let why = 'OK';
    if (domain?.toString() === CURVE_ZAP_DOMAIN) {
      const key = credentials[0] && credentials[0].length === 32 ? z85(credentials[0]) : undefined;
      ok = mechanism?.toString() === 'CURVE' && key !== undefined && allowed.has(key);
      why = ok ? 'OK' : 'client key is not this pipeline\'s';
    }
    await sock.send([version ?? Buffer.from('1.0'), requestId ?? Buffer.alloc(0), ok ? '200' : '400', why, '', '']);
  }
}

const Z85_CHARS = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';

/** Z85 encoding of a 32-byte key (RFC 32). */
export function z85(data: Buffer): string {
  let out = '';
  for (let i = 0; i < data.length; i += 4) {
    let value = data.readUInt32BE(i);
    const chunk: string[] = [];
    for (let j = 0; j < 5; j++) {
      chunk.unshift(Z85_CHARS[value % 85]);
      value = Math.floor(value / 85);
    }
    out += chunk.join('');
  }
  return out;
}
