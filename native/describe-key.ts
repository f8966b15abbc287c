/**
 * A routing id or topic as it goes into an error message: quoted text when it is printable ASCII
 * (what users set as identities and topics), else hex, so binary ids never garble a log line.
 */
export function describeKey(key: Buffer | undefined): string {
  if (!key) return '(none)';
  return /^[\x20-\x7e]+$/.test(key.toString('latin1')) ? `"${key.toString('latin1')}"` : `0x${key.toString('hex')}`;
}
