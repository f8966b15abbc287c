import * as fs from 'fs';
import * as path from 'path';
import { ensureCa, issueCertificate, writeIdentity } from '../native/quic/pki';
import type { ParsedArgs } from './cli';

/**
 * `spawn-red certs <dir> --names a,b`: a QUIC certificate authority in <dir>/ca and one runtime
 * directory per name (<dir>/<name>: ca.pem, cert.pem, key.pem) signed by it, for machines the
 * launcher does not provision (copy <dir>/<name> there and point SPAWN_QUIC_DIR at it). Running it
 * again adds names under the same CA.
 */
export function certsCommand(args: ParsedArgs, print: (t: string) => void = (t) => console.log(t)): number {
  const dir = args.positional[0];
  const names = String(args.flags.names ?? '')
    .split(/[\s,]+/)
    .filter(Boolean);
  const bad = names.filter((n) => !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(n) || n === 'ca');
  if (bad.length) {
    console.error(`spawn-red certs: --names: ${bad.map((n) => `"${n}"`).join(', ')} cannot be a directory name here (letters, digits, . _ -; not "ca")`);
    return 1;
  }
  const ca = ensureCa(path.join(dir, 'ca'), `spawn-red CA ${path.basename(path.resolve(dir))}`);
  print(`CA: ${path.join(dir, 'ca', 'ca.pem')} (its key, ca-key.pem, stays here: mode 0600)`);
  for (const name of names) {
    const out = path.join(dir, name);
    if (fs.existsSync(path.join(out, 'key.pem'))) {
      print(`${name}: ${out} exists, kept`);
      continue;
    }
    writeIdentity(out, ca.certPem, issueCertificate(ca, name, [name]));
    print(`${name}: ${out} (copy it to the machine; SPAWN_QUIC_DIR=${path.resolve(out)} there)`);
  }
  return 0;
}
