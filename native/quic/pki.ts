import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import forge from 'node-forge';

/**
 * Certificates for QUIC's TLS 1.3: one certificate authority per pipeline (or one local CA for the
 * editor), and one certificate per instance signed by it. Every QUIC connection verifies the peer's
 * certificate against the CA in both directions, so a peer holding a certificate from another CA
 * is refused.
 *
 * Keys are made by Node's crypto (native and fast); node-forge (pure JavaScript, no global side
 * effects, no native parts) builds and signs the X.509 certificates. Private keys live only in
 * files of mode 0600 inside a 0700 directory: never in a flow, an export or a log.
 *
 * Directory layout (one per runtime; the launcher ships all but ca-key.pem to each instance):
 *   ca.pem       the CA certificate (public; trusted roots)
 *   ca-key.pem   the CA's private key (only where certificates are issued: the editor, the launcher)
 *   cert.pem     this runtime's certificate
 *   key.pem      this runtime's private key
 */

/** Every certificate names this DNS name: QUIC clients verify it (quiche checks DNS SANs, not IPs). */
export const PEER_NAME = 'peer.spawn-red.internal';

export interface TlsIdentity {
  caPem: string;
  certPem: string;
  keyPem: string;
  /** Where the files are, for messages. */
  dir: string;
}

const DAY = 24 * 3600 * 1000;

function newKeyPair(): { publicPem: string; privatePem: string } {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

function serial(): string {
  // Positive, 16 random bytes.
  const b = crypto.randomBytes(16);
  b[0] &= 0x7f;
  return b.toString('hex');
}

/** A new self-signed CA certificate and key, valid ten years. */
export function createCa(commonName: string): { certPem: string; keyPem: string } {
  const keys = newKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicPem);
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - DAY);
  cert.validity.notAfter = new Date(Date.now() + 3650 * DAY);
  const subject = [{ name: 'commonName', value: commonName }, { name: 'organizationName', value: 'spawn-red' }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true, pathLenConstraint: 0 },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(keys.privatePem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privatePem };
}

/** A certificate for one runtime, signed by the CA; valid for both TLS server and client use. */
export function issueCertificate(ca: { certPem: string; keyPem: string }, commonName: string, dnsNames: string[] = []): { certPem: string; keyPem: string } {
  const keys = newKeyPair();
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicPem);
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - DAY);
  cert.validity.notAfter = new Date(Date.now() + 825 * DAY);
  cert.setSubject([{ name: 'commonName', value: commonName }, { name: 'organizationName', value: 'spawn-red' }]);
  cert.setIssuer(caCert.subject.attributes);
  const names = [...new Set([PEER_NAME, ...dnsNames])];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    { name: 'subjectAltName', altNames: names.map((value) => ({ type: 2, value })) },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(ca.keyPem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privatePem };
}

function writePrivate(file: string, text: string): void {
  fs.writeFileSync(file, text, { mode: 0o600 });
  fs.chmodSync(file, 0o600); // the mode above applies only when the file is new
}

function readIf(file: string): string | undefined {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : undefined;
}

/** Makes `dir` (mode 0700) with a new CA in it, unless it has one. Returns the CA. */
export function ensureCa(dir: string, commonName = 'spawn-red local CA'): { certPem: string; keyPem: string } {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certPem = readIf(path.join(dir, 'ca.pem'));
  const keyPem = readIf(path.join(dir, 'ca-key.pem'));
  if (certPem && keyPem) return { certPem, keyPem };
  const ca = createCa(commonName);
  writePrivate(path.join(dir, 'ca-key.pem'), ca.keyPem);
  fs.writeFileSync(path.join(dir, 'ca.pem'), ca.certPem);
  return ca;
}

/** Writes a runtime's identity (CA certificate, its certificate, its key) into `dir`. */
export function writeIdentity(dir: string, caPem: string, cert: { certPem: string; keyPem: string }): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dir, 'ca.pem'), caPem);
  fs.writeFileSync(path.join(dir, 'cert.pem'), cert.certPem);
  writePrivate(path.join(dir, 'key.pem'), cert.keyPem);
}

export class PkiError extends Error {}

/**
 * This runtime's identity from `dir`. A directory with ca.pem, cert.pem and key.pem (as the
 * launcher ships them) is used as it is; one with a CA key (the editor's local CA) gets a
 * certificate issued on first use; an empty or missing directory gets a new local CA first.
 */
export function loadIdentity(dir: string, name = 'spawn-red runtime'): TlsIdentity {
  const caPem = readIf(path.join(dir, 'ca.pem'));
  const certPem = readIf(path.join(dir, 'cert.pem'));
  const keyPem = readIf(path.join(dir, 'key.pem'));
  if (caPem && certPem && keyPem) return { caPem, certPem, keyPem, dir };
  if (caPem && !fs.existsSync(path.join(dir, 'ca-key.pem'))) {
    throw new PkiError(`QUIC certificates in ${dir} are incomplete: ca.pem is there but cert.pem or key.pem is missing, and there is no ca-key.pem to issue one`);
  }
  const ca = ensureCa(dir);
  const cert = issueCertificate(ca, name);
  writeIdentity(dir, ca.certPem, cert);
  return { caPem: ca.certPem, certPem: cert.certPem, keyPem: cert.keyPem, dir };
}
