import * as fs from 'fs';
import * as path from 'path';
import type { SSMClient } from '@aws-sdk/client-ssm';

/**
 * Instance secrets, the instance's side: `spawn-red run --secrets ssm:/spawn-red/<pipeline>/<launch>/<stage>/<index>`
 * (or SPAWN_SECRETS, which the EC2 peer writer puts in the stage's environment) fetches every
 * parameter under the path with GetParametersByPath (decrypted) into a directory of mode 0700,
 * each as a file of mode 0600 named by the rest of its parameter name (`quic/key.pem`). Then it
 * points the consumers at their folders: `quic/` → SPAWN_QUIC_DIR. On EC2 the directory is under
 * systemd's RuntimeDirectory (/run/spawn-red: tmpfs, removed when the service stops), so the keys
 * never reach the instance's disk.
 *
 * Credentials and region: the SDK chain, i.e. the instance profile and AWS_REGION (the peer writer
 * writes it). The launcher's side is launcher/ec2/secrets.ts.
 */

/** Folders of the secrets directory and the variable that tells their consumer where they are. */
export const SECRET_CONSUMERS: Record<string, string> = {
  quic: 'SPAWN_QUIC_DIR',
};

/** Single files of the secrets directory and the variable that names the file for its consumer. */
export const SECRET_FILE_CONSUMERS: Record<string, string> = {
  // The pipeline's CurveZMQ key pair (native/curve.ts reads it; launcher/ec2/curve-secrets.ts ships it).
  'curve/curve-keys.json': 'SPAWN_CURVE_KEYS',
};

export class SecretsError extends Error {}

export interface FetchedSecrets {
  dir: string;
  /** Relative paths written. */
  files: string[];
  /** SPAWN_SECRETS_DIR and each consumer's variable whose folder arrived. */
  env: Record<string, string>;
}

/** `ssm:/a/b/c` → the parameter path. */
export function parseSecretsSpec(spec: string): { store: 'ssm'; path: string } {
  const m = /^ssm:(\/[A-Za-z0-9_./-]*[A-Za-z0-9_.-])$/.exec(spec.trim());
  if (!m || m[1].includes('//')) throw new SecretsError(`--secrets ${spec}: expected ssm:/path/of/parameters (an SSM Parameter Store path, e.g. ssm:/spawn-red/<pipeline>/<launch>/<stage>/<index>)`);
  return { store: 'ssm', path: m[1] };
}

const SAFE_PART = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/;

function accessDenied(paramPath: string, region: string, detail: string): SecretsError {
  return new SecretsError(
    `reading the instance's secrets from SSM Parameter Store (${paramPath}, ${region}) was denied: ${detail} — the instance profile's role needs ` +
      `ssm:GetParametersByPath on arn:aws:ssm:${region}:<account>:parameter${paramPath.split('/').slice(0, 3).join('/')}/* ` +
      'and kms:Decrypt on the KMS key of the parameters when they use a customer managed key (--kms-key; the default aws/ssm key needs none); README "QUIC on EC2" has the policy',
  );
}

/** Write `text` to `file` (mode 0600) in one step. */
function writePrivate(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o600 });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
}

function makePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
}

/** Fetch every parameter under the spec's path into `dir`. */
export async function fetchInstanceSecrets(spec: string, dir: string, client?: SSMClient): Promise<FetchedSecrets> {
  const { path: paramPath } = parseSecretsSpec(spec);
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const sdk = require('@aws-sdk/client-ssm') as typeof import('@aws-sdk/client-ssm');
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const ssm = client ?? new sdk.SSMClient({ maxAttempts: 6 });
  let region = '?';
  try {
    region = await ssm.config.region();
  } catch {
    throw new SecretsError(`fetching the instance's secrets (${paramPath}): no AWS region: set AWS_REGION (the EC2 launcher's peer writer writes it to /etc/spawn/pipeline.env)`);
  }
  const params: Array<{ name: string; value: string }> = [];
  let NextToken: string | undefined;
  try {
    do {
      const out = await ssm.send(new sdk.GetParametersByPathCommand({ Path: paramPath, Recursive: true, WithDecryption: true, MaxResults: 10, NextToken }));
      for (const p of out.Parameters ?? []) if (p.Name && p.Value !== undefined) params.push({ name: p.Name, value: p.Value });
      NextToken = out.NextToken;
    } while (NextToken);
  } catch (e) {
    const err = e as Error & { name?: string };
    const detail = `${err.name ?? 'Error'}: ${String(err.message ?? e).split('\n')[0]}`;
    if (/AccessDenied|NotAuthorized|Unauthorized|KMS/.test(`${err.name} ${err.message}`)) throw accessDenied(paramPath, region, detail);
    if (err.name === 'CredentialsProviderError') throw new SecretsError(`fetching the instance's secrets (${paramPath}): no AWS credentials: ${detail} — the instance needs an instance profile (spawn-red launch --instance-profile)`);
    throw new SecretsError(`fetching the instance's secrets from SSM Parameter Store (${paramPath}, ${region}) failed: ${detail}`);
  }
  if (params.length === 0) {
    throw new SecretsError(
      `no parameters under ${paramPath} in SSM Parameter Store (${region}): the pipeline was taken down (spawn-red down deletes them) or the launch was rolled back, or the path is wrong (launch again with spawn-red launch)`,
    );
  }
  makePrivateDir(dir);
  const files: string[] = [];
  for (const p of params) {
    const rel = p.name.slice(paramPath.length + 1);
    const parts = rel.split('/');
    if (!p.name.startsWith(`${paramPath}/`) || parts.some((s) => !SAFE_PART.test(s))) throw new SecretsError(`parameter ${p.name}: not a file name under ${paramPath}`);
    let sub = dir;
    for (const part of parts.slice(0, -1)) makePrivateDir((sub = path.join(sub, part)));
    writePrivate(path.join(dir, ...parts), p.value);
    files.push(rel);
  }
  const env: Record<string, string> = { SPAWN_SECRETS_DIR: dir };
  for (const [folder, variable] of Object.entries(SECRET_CONSUMERS)) {
    if (files.some((f) => f.startsWith(`${folder}/`))) env[variable] = path.join(dir, folder);
  }
  for (const [file, variable] of Object.entries(SECRET_FILE_CONSUMERS)) {
    if (files.includes(file)) env[variable] = path.join(dir, ...file.split('/'));
  }
  return { dir, files: files.sort(), env };
}
