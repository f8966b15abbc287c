import * as fs from 'fs';
import * as path from 'path';
import { ensureCa, issueCertificate, writeIdentity } from '../../native/quic/pki';

/**
 * QUIC certificates for a local launch: one CA per pipeline, kept in the pipeline's state directory
 * (quic-ca/, mode 0700, key 0600), and one certificate per instance in the instance's directory
 * (quic/), which the instance finds through SPAWN_QUIC_DIR. A peer of another pipeline has a
 * certificate from another CA and is refused.
 */

const TRANSPORT_NODES = /^spawn-(push|pull|pub|sub|router|dealer)$/;

/** The flow has a pattern node that may use QUIC (transport quic or auto). */
export function flowUsesQuic(flow: unknown[] | undefined): boolean {
  return (flow ?? []).some((n) => {
    const node = n as { type?: string; transport?: string; d?: boolean };
    return !!node && TRANSPORT_NODES.test(node.type ?? '') && !node.d && (node.transport === 'quic' || node.transport === 'auto');
  });
}

export function quicDirOf(instanceDir: string): string {
  return path.join(instanceDir, 'quic');
}

/** Make the pipeline's CA (once) and a certificate for an instance, named by its DNS name. */
export function issueInstanceCertificate(pipelineDir: string, pipelineId: string, instanceDir: string, name: string): void {
  const ca = ensureCa(path.join(pipelineDir, 'quic-ca'), `spawn-red pipeline ${pipelineId}`);
  writeIdentity(quicDirOf(instanceDir), ca.certPem, issueCertificate(ca, name, [name]));
}

/** SPAWN_QUIC_DIR for an instance that has certificates. */
export function quicEnv(instanceDir: string): Record<string, string> {
  const dir = quicDirOf(instanceDir);
  return fs.existsSync(path.join(dir, 'key.pem')) ? { SPAWN_QUIC_DIR: dir } : {};
}
