import { EC2Client } from '@aws-sdk/client-ec2';
import { GetParametersByPathCommand, SSMClient } from '@aws-sdk/client-ssm';

/** What the EC2 tests tell the AWS SDK when it talks to moto (never a real endpoint). */
export const REGION = 'us-east-1';
export const CREDS = { accessKeyId: 'testing', secretAccessKey: 'testing' };

/** EC2 and SSM clients on moto's endpoint. */
export function motoClients(endpoint: string): { ec2: EC2Client; ssm: SSMClient } {
  return {
    ec2: new EC2Client({ region: REGION, endpoint, credentials: CREDS }),
    ssm: new SSMClient({ region: REGION, endpoint, credentials: CREDS }),
  };
}

/** Every SSM parameter under `prefix` (all pages), sorted by name; `decrypt` for SecureString values. */
export async function ssmParameters(ssm: SSMClient, prefix: string, decrypt = false): Promise<Array<{ Name?: string; Type?: string; Value?: string }>> {
  const out: Array<{ Name?: string; Type?: string; Value?: string }> = [];
  let NextToken: string | undefined;
  do {
    const r = await ssm.send(new GetParametersByPathCommand({ Path: prefix, Recursive: true, WithDecryption: decrypt, NextToken }));
    out.push(...(r.Parameters ?? []));
    NextToken = r.NextToken;
  } while (NextToken);
  return out.sort((a, b) => a.Name!.localeCompare(b.Name!));
}
