import * as path from 'path';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { ensureCa, issueCertificate } from '../../native/quic/pki';
import { quietSdkNotice, showInput } from './api';
import { Ec2Error, errorCode, oneLine } from './errors';
import { dnsName, instanceName, TAG } from './plan';

/**
 * Instance secrets, the launcher's side: files an instance needs that must not travel in user
 * data (anyone allowed ec2:DescribeInstanceAttribute reads it), in ec2.json, in an export or in a
 * log. The launcher stores each instance's files as SSM Parameter Store SecureString parameters
 * (encrypted with KMS: the account's aws/ssm key, or --kms-key) under
 *
 *   /spawn-red/<pipeline-id>/<launch-token>/<stage-id>/<instance-index>/<file>
 *
 * where <file> is a relative path such as `quic/key.pem`. The user data carries only the path of
 * its stage (`…/<stage-id>`); the peer writer appends the instance's index once it knows it, and
 * `spawn-red run` fetches the files at start-up (launcher/instance-secrets.ts) into a 0700
 * directory. The launch token in the path keeps one launch's parameters apart from another's of
 * the same pipeline id: a rollback deletes its launch's, `down` the whole pipeline's.
 *
 * The files are generic (a relative path → text). QUIC is the first user: `quic/ca.pem` (the
 * pipeline CA's certificate, public), `quic/cert.pem` and `quic/key.pem` (the instance's). The
 * CA's private key never leaves the launching machine: it stays in the pipeline's state folder
 * (quic-ca/ca-key.pem, mode 0600 in a 0700 folder), as with the local provider.
 *
 * Why SSM Parameter Store, not Secrets Manager: free standard parameters, a path hierarchy that
 * one IAM statement can scope (ssm:GetParametersByPath on /spawn-red/<pipeline>/*), and 4 KB per
 * value, which holds a PEM certificate or an RSA 2048 key (~1.7 KB) with room to spare.
 */

export const SECRETS_ROOT = '/spawn-red';
/** SSM standard parameters hold at most 4096 characters. */
export const PARAMETER_LIMIT = 4096;
/** Characters SSM allows in a parameter name (besides the slashes between levels). */
const NAME_PART = /^[A-Za-z0-9_.-]+$/;

/** A set of named files: relative path (`quic/key.pem`) → contents. */
export type SecretFiles = Record<string, string>;

export interface InstanceSecrets {
  stageId: string;
  index: number;
  files: SecretFiles;
}

export const pipelineSecretsPath = (pipelineId: string) => `${SECRETS_ROOT}/${pipelineId}`;
export const launchSecretsPath = (pipelineId: string, launchToken: string) => `${pipelineSecretsPath(pipelineId)}/${launchToken}`;
export const stageSecretsPath = (pipelineId: string, launchToken: string, stageId: string) => `${launchSecretsPath(pipelineId, launchToken)}/${stageId}`;
export const instanceSecretsPath = (pipelineId: string, launchToken: string, stageId: string, index: number) => `${stageSecretsPath(pipelineId, launchToken, stageId)}/${index}`;

/** Problems with a pipeline id as a level of a parameter name (SSM allows a-z A-Z 0-9 _ . -). */
export function secretPathProblems(pipelineId: string): string[] {
  return NAME_PART.test(pipelineId) ? [] : [`pipeline id "${pipelineId}": the instances' secrets (QUIC certificates, CurveZMQ keys) go to SSM Parameter Store under ${SECRETS_ROOT}/<pipeline id>/, whose names allow only letters, digits, "_", "." and "-": choose another id (--pipeline-id)`];
}

/**
 * The pipeline's CA (made once, in `caDir`) and one certificate per instance slot. Every
 * certificate names PEER_NAME, the name QUIC clients verify (native/quic/pki.ts): the same for
 * every peer, so nothing depends on addresses unknown before the launch; the instance's DNS name
 * (spawn:dns-name) is added for people reading the certificate.
 */
export function quicInstanceSecrets(caDir: string, pipelineId: string, stages: Array<{ stageId: string; count: number }>): InstanceSecrets[] {
  const ca = ensureCa(caDir, `spawn-red pipeline ${pipelineId}`);
  const out: InstanceSecrets[] = [];
  for (const s of stages) {
    for (let index = 0; index < s.count; index++) {
      const cert = issueCertificate(ca, instanceName(pipelineId, s.stageId, index), [dnsName(pipelineId, s.stageId, index)]);
      out.push({ stageId: s.stageId, index, files: { 'quic/ca.pem': ca.certPem, 'quic/cert.pem': cert.certPem, 'quic/key.pem': cert.keyPem } });
    }
  }
  return out;
}

/** Where the launcher keeps a pipeline's CA (its key never leaves this machine). */
export const caDirOf = (pipelineDir: string) => path.join(pipelineDir, 'quic-ca');

/** An SSM client from the standard SDK chain (AWS_ENDPOINT_URL_SSM moves it, e.g. to moto), loaded only when needed. */
export function makeSsmClient(region?: string): SSMClient {
  quietSdkNotice();
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { SSMClient: Client } = require('@aws-sdk/client-ssm') as typeof import('@aws-sdk/client-ssm');
  // PutParameter is throttled at a few tens of calls per second: the SDK's retries with backoff.
  return new Client({ region: region || undefined, maxAttempts: 8 });
}

function ssm(): typeof import('@aws-sdk/client-ssm') {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return require('@aws-sdk/client-ssm') as typeof import('@aws-sdk/client-ssm');
}

/** The launching side's IAM permissions, for an access-denied hint. */
const LAUNCHER_PERMISSIONS = 'the launching credentials need ssm:PutParameter, ssm:AddTagsToResource, ssm:GetParametersByPath and ssm:DeleteParameters on arn:aws:ssm:*:*:parameter/spawn-red/* (and kms:Encrypt on --kms-key when given)';

function ssmError(api: string, e: unknown, pipelineId: string): Ec2Error {
  const code = errorCode(e);
  const message = oneLine((e as Error)?.message);
  if (/AccessDenied|UnauthorizedOperation|NotAuthorized/.test(code)) return new Ec2Error(api, code, message, LAUNCHER_PERMISSIONS);
  if (code === 'ParameterLimitExceeded') return new Ec2Error(api, code, message, 'the account has too many parameters (10,000 standard ones per region): delete old ones, e.g. of pipelines taken down elsewhere');
  if (/^(ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EAI_AGAIN)$/.test(code)) {
    return new Ec2Error(api, code, message, `cannot reach SSM${process.env.AWS_ENDPOINT_URL_SSM ? ` at ${process.env.AWS_ENDPOINT_URL_SSM}` : ''}; spawn-red down ${pipelineId} removes what was created`);
  }
  return new Ec2Error(api, code, message, `spawn-red down ${pipelineId} removes what was created`);
}

export interface SecretStoreOptions {
  client?: SSMClient;
  dryRun?: boolean;
  print?: (text: string) => void;
  /** A customer managed KMS key (id, alias or ARN); default: the account's aws/ssm key. */
  kmsKeyId?: string;
  pipelineId: string;
}

/** The launcher's side of SSM Parameter Store: write an instance's files, list and delete a pipeline's. */
export class SecretStore {
  readonly log: Array<{ op: string; name: string }> = [];
  /** Parameters this store has written (so far, when a write fails half-way). */
  readonly written: string[] = [];

  constructor(private readonly o: SecretStoreOptions) {
    if (!o.dryRun && !o.client) throw new Error('SecretStore needs a client');
  }

  get dryRun(): boolean {
    return Boolean(this.o.dryRun);
  }

  /** Write each instance's files as SecureString parameters; resolves with the names written. */
  async put(pipelineId: string, launchToken: string, secrets: InstanceSecrets[]): Promise<string[]> {
    const { PutParameterCommand } = ssm();
    const names: string[] = [];
    for (const s of secrets) {
      const base = instanceSecretsPath(pipelineId, launchToken, s.stageId, s.index);
      for (const [file, value] of Object.entries(s.files)) {
        const name = `${base}/${file}`;
        if (value.length > PARAMETER_LIMIT) throw new Ec2Error(`PutParameter ${name}`, 'ValueTooLong', `${value.length} characters`, `SSM standard parameters hold ${PARAMETER_LIMIT}`);
        const input = {
          Name: name,
          Type: 'SecureString' as const,
          Value: value,
          Description: `spawn-red pipeline ${pipelineId}: ${file} of ${s.stageId} instance ${s.index}`,
          ...(this.o.kmsKeyId ? { KeyId: this.o.kmsKeyId } : {}),
          Tags: [
            { Key: TAG.pipelineId, Value: pipelineId },
            { Key: TAG.launch, Value: launchToken },
          ],
        };
        this.log.push({ op: 'PutParameter', name });
        if (this.dryRun) {
          // The value is made at launch and never shown.
          this.print(`PutParameter (${s.stageId} instance ${s.index}) ${showInput({ ...input, Value: `<${file}: made at launch, not shown>` })}`);
        } else {
          try {
            await this.o.client!.send(new PutParameterCommand(input));
          } catch (e) {
            throw ssmError(`PutParameter ${name}`, e, pipelineId);
          }
        }
        names.push(name);
        if (!this.dryRun) this.written.push(name);
      }
    }
    return names;
  }

  /** The names of every parameter under `prefix` (values not read, not decrypted). */
  async list(prefix: string): Promise<string[]> {
    const { GetParametersByPathCommand } = ssm();
    this.log.push({ op: 'GetParametersByPath', name: prefix });
    if (this.dryRun) {
      this.print(`GetParametersByPath ${showInput({ Path: prefix, Recursive: true, WithDecryption: false })}`);
      return [];
    }
    const names: string[] = [];
    let NextToken: string | undefined;
    do {
      let out;
      try {
        out = await this.o.client!.send(new GetParametersByPathCommand({ Path: prefix, Recursive: true, WithDecryption: false, MaxResults: 10, NextToken }));
      } catch (e) {
        throw ssmError(`GetParametersByPath ${prefix}`, e, this.o.pipelineId);
      }
      for (const p of out.Parameters ?? []) if (p.Name) names.push(p.Name);
      NextToken = out.NextToken;
    } while (NextToken);
    return names;
  }

  /** Delete every parameter under `prefix` and the `known` names (ec2.json's); resolves with those deleted. */
  async deleteUnder(prefix: string, known: string[] = []): Promise<string[]> {
    const { DeleteParametersCommand } = ssm();
    const names = [...new Set([...known.filter((n) => n.startsWith(`${prefix}/`)), ...(await this.list(prefix))])];
    const deleted: string[] = [];
    for (let i = 0; i < names.length; i += 10) {
      const batch = names.slice(i, i + 10);
      this.log.push({ op: 'DeleteParameters', name: batch.join(',') });
      if (this.dryRun) {
        this.print(`DeleteParameters ${showInput({ Names: batch })}`);
        continue;
      }
      try {
        const out = await this.o.client!.send(new DeleteParametersCommand({ Names: batch }));
        deleted.push(...(out.DeletedParameters ?? []));
      } catch (e) {
        throw ssmError('DeleteParameters', e, this.o.pipelineId);
      }
    }
    return deleted;
  }

  private print(text: string): void {
    (this.o.print ?? ((t: string) => console.log(t)))(text);
  }
}
