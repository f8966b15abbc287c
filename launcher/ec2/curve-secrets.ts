import { CurveKeys, makeKeys } from '../../native/curve';
import type { InstanceSecrets } from './secrets';

/**
 * CurveZMQ on EC2, the launcher's side: a flow whose pattern nodes have encryption "curve" gets one
 * key pair per launch, shipped to every instance as the SecureString parameter
 * `…/<stage>/<index>/curve/curve-keys.json` (the file format native/curve.ts reads through
 * SPAWN_CURVE_KEYS; launcher/instance-secrets.ts points the variable at it). The key pair is made
 * in memory and never written on the launching machine: nothing there needs the secret key after
 * the launch, and a new launch makes a new pair. The public key (public by design) travels in the
 * user data to the peer writer, which puts it in the peer file as curve_public_key, as the local
 * launcher does.
 */

/** The parameter (file) every instance of an encrypted flow gets. */
export const CURVE_SECRET_FILE = 'curve/curve-keys.json';

const PATTERN_NODES = /^spawn-(push|pull|pub|sub|router|dealer)$/;

/** The flow has an enabled pattern node with encryption "curve". */
export function flowUsesCurve(flow: unknown[] | undefined): boolean {
  return (flow ?? []).some((n) => {
    const node = n as { type?: string; encryption?: string; d?: boolean };
    return !!node && PATTERN_NODES.test(node.type ?? '') && !node.d && node.encryption === 'curve';
  });
}

/** A new key pair for a launch (in memory only). */
export function launchCurveKeys(): CurveKeys {
  return makeKeys();
}

/** The key file's text, as native/curve.ts writeKeyFile writes it. */
export function curveKeyFileText(keys: CurveKeys): string {
  return JSON.stringify({ publicKey: keys.publicKey, secretKey: keys.secretKey });
}

/** Adds the pipeline's key file to each slot's files (a slot missing from `into` gets a new entry). */
export function addCurveSecrets(into: InstanceSecrets[], slots: Array<{ stageId: string; count: number }>, fileText: string): InstanceSecrets[] {
  const out = into.map((s) => ({ ...s, files: { ...s.files } }));
  for (const slot of slots) {
    for (let index = 0; index < slot.count; index++) {
      let entry = out.find((s) => s.stageId === slot.stageId && s.index === index);
      if (!entry) out.push((entry = { stageId: slot.stageId, index, files: {} }));
      entry.files[CURVE_SECRET_FILE] = fileText;
    }
  }
  return out;
}
