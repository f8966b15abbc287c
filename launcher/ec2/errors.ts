/**
 * AWS errors as one clear line: the API, the error code, AWS's message (one line, shortened) and
 * what to do about it. The launcher prints `spawn-red <verb>: <line>`; never a stack trace.
 */

export class Ec2Error extends Error {
  constructor(
    /** The EC2 API (or step) that failed, e.g. `RunInstances (stage "consumer")`. */
    readonly api: string,
    /** AWS's error code (`InsufficientInstanceCapacity`), or a spawn-red code (`Timeout`). */
    readonly code: string,
    /** AWS's message, one line. */
    readonly detail: string,
    /** What the user can do. */
    readonly hint: string,
  ) {
    super(`${api} failed: ${code}${detail ? `: ${detail}` : ''} — ${hint}`);
    this.name = 'Ec2Error';
  }
}

/** A problem found before any API call (a plan the launcher refuses), as one line. */
export class Ec2PlanError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'Ec2PlanError';
  }
}

const THROTTLING = new Set(['RequestLimitExceeded', 'Throttling', 'ThrottlingException', 'TooManyRequestsException', 'RequestThrottled', 'RequestThrottledException', 'SlowDown']);
const TRANSIENT = new Set(['InternalError', 'InternalFailure', 'ServiceUnavailable', 'Unavailable', 'RequestTimeout', 'RequestTimeoutException', 'RequestExpired', 'RequestTimeTooSkewed', 'PriorRequestNotComplete']);
const NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'TimeoutError', 'ERR_SOCKET_CONNECTION_TIMEOUT']);

interface AwsLikeError {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $fault?: string;
  $metadata?: { httpStatusCode?: number };
}

/** AWS's error code for an SDK error (or a Node network error code). */
export function errorCode(e: unknown): string {
  const err = (e ?? {}) as AwsLikeError;
  if (typeof err.code === 'string' && NETWORK.has(err.code)) return err.code;
  if (err.name && err.name !== 'Error') return err.name;
  if (typeof err.Code === 'string') return err.Code;
  if (typeof err.code === 'string') return err.code;
  return 'Error';
}

export function isThrottling(e: unknown): boolean {
  return THROTTLING.has(errorCode(e));
}

/** Server-side answers that a quick retry does not change (AWS says: try later, or elsewhere). */
const FINAL = new Set(['InsufficientInstanceCapacity', 'InsufficientCapacity', 'InsufficientHostCapacity', 'InsufficientReservedInstanceCapacity', 'InsufficientSpotInstanceCapacity']);

/** Worth retrying: throttling, a server-side fault, a network failure. */
export function isTransient(e: unknown): boolean {
  const code = errorCode(e);
  if (FINAL.has(code)) return false;
  if (THROTTLING.has(code) || TRANSIENT.has(code) || NETWORK.has(code)) return true;
  const err = (e ?? {}) as AwsLikeError;
  const status = err.$metadata?.httpStatusCode;
  return err.$fault === 'server' || (status !== undefined && status >= 500 && status !== 501);
}

/** AWS's message on one line, without the encoded authorization blob, at most `max` characters. */
export function oneLine(message: string | undefined, max = 300): string {
  let m = String(message ?? '')
    .replace(/Encoded authorization failure message:\s*\S+/i, '(encoded authorization message omitted)')
    .replace(/\s+/g, ' ')
    .trim();
  // The SDK appends a hint about hidden fields to deserialization errors: not for users.
  m = m.replace(/\s*Deserialization error: to see the raw response.*$/i, '');
  return m.length > max ? `${m.slice(0, max - 1)}…` : m;
}

/** What to do, by error code; `pipelineId` completes the `spawn-red down` advice. */
export function hintFor(code: string, message: string, pipelineId?: string): string {
  const down = pipelineId ? `spawn-red down ${pipelineId}` : 'spawn-red down <pipeline_id>';
  if (THROTTLING.has(code)) return 'EC2 kept throttling the requests after several retries: wait a minute and run the command again';
  if (NETWORK.has(code)) {
    const endpoint = process.env.AWS_ENDPOINT_URL_EC2 || process.env.AWS_ENDPOINT_URL;
    return endpoint
      ? `cannot reach the EC2 endpoint ${endpoint} (AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL): check that it runs`
      : 'cannot reach EC2: check the network connection and the region';
  }
  if (/^Region is missing$/i.test(message) || code === 'RegionMissing') return 'no AWS region configured: pass --region, or set AWS_REGION (or a region in ~/.aws/config)';
  switch (code) {
    case 'CredentialsProviderError':
      return 'no AWS credentials found: set AWS_PROFILE (aws configure / aws sso login) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY';
    case 'UnauthorizedOperation':
    case 'AccessDenied':
    case 'AccessDeniedException':
      return 'the AWS identity in use lacks this permission: grant it the EC2 actions listed in the README ("Launch on EC2"), or use another profile';
    case 'AuthFailure':
    case 'InvalidClientTokenId':
    case 'SignatureDoesNotMatch':
    case 'UnrecognizedClientException':
    case 'IncompleteSignature':
      return 'AWS did not accept the credentials: check AWS_PROFILE / the access key, and that the region is enabled for the account';
    case 'ExpiredToken':
    case 'ExpiredTokenException':
      return 'the AWS session expired: refresh the credentials (e.g. aws sso login) and run the command again';
    case 'InsufficientInstanceCapacity':
    case 'InsufficientCapacity':
    case 'InsufficientHostCapacity':
    case 'InsufficientReservedInstanceCapacity':
      return 'AWS has no capacity for this instance type in this availability zone right now: try another --subnet (zone), another instance type, or later';
    case 'InsufficientFreeAddressesInSubnet':
      return 'the subnet has no free addresses: choose a larger --subnet';
    case 'VcpuLimitExceeded':
    case 'InstanceLimitExceeded':
    case 'MaxSpotInstanceCountExceeded':
      return "the account's vCPU quota for this instance family is too low: request an increase in Service Quotas, or launch fewer or smaller instances";
    case 'SpotMaxPriceTooLow':
    case 'InsufficientSpotInstanceCapacity':
      return 'no spot capacity for this instance type now: remove spot from the stage, or choose another instance type or zone';
    case 'InvalidKeyPair.NotFound':
      return 'no EC2 key pair of that name in this region: check --key-name (aws ec2 describe-key-pairs)';
    case 'InvalidSubnetID.NotFound':
    case 'InvalidSubnetID.Malformed':
    case 'InvalidSubnet':
      return 'no such subnet in this region: check --subnet (aws ec2 describe-subnets)';
    case 'InvalidAMIID.NotFound':
    case 'InvalidAMIID.Malformed':
    case 'InvalidAMIID.Unavailable':
      return "no such AMI in this region: fix the stage's ami, or pass --ami";
    case 'InvalidInstanceType':
      return "EC2 does not know this instance type here: fix the stage's instance_type";
    case 'Unsupported':
    case 'UnsupportedOperation':
      return 'this instance type or option is not offered here: choose another instance type, or a --subnet in another availability zone';
    case 'InvalidGroup.Duplicate':
    case 'InvalidPlacementGroup.Duplicate':
      return `it is left from an earlier launch of this pipeline: run ${down} first`;
    case 'DependencyViolation':
      return `something still uses it (instances still shutting down): run ${down} again in a minute`;
    case 'InvalidPlacementGroup.Unknown':
      return "no such placement group: fix the stage's placement_group (or use \"auto\")";
    case 'PlacementGroupLimitExceeded':
    case 'SecurityGroupLimitExceeded':
    case 'RulesPerSecurityGroupLimitExceeded':
      return 'an account limit is reached: delete unused groups (spawn-red list / down) or request a higher quota';
    case 'NoSuchEntity':
    case 'InvalidIamInstanceProfile':
    case 'InvalidInstanceProfile.NotFound':
      return 'no IAM instance profile of that name: check --instance-profile (aws iam list-instance-profiles)';
    case 'OptInRequired':
      return 'the account has not accepted the terms of this service or AMI: accept them in the AWS console (Marketplace), or choose another AMI';
    case 'InvalidParameterValue':
    case 'InvalidParameterCombination':
    case 'InvalidParameter':
    case 'MissingParameter':
    case 'ValidationError':
      if (/iam|instance ?profile/i.test(message)) return 'EC2 refused the instance profile: check --instance-profile (its role must be assumable by ec2.amazonaws.com)';
      if (/efa|interface/i.test(message)) return 'EC2 refused the EFA network interface: choose an instance type that supports EFA, or remove efa_enabled';
      return 'EC2 refused a parameter: check the stage settings (instance type, AMI, spot, EFA) and the flags against the message';
    case 'HTTP 500':
    case 'HTTP 502':
    case 'HTTP 503':
    case 'HTTP 504': {
      const endpoint = process.env.AWS_ENDPOINT_URL_EC2 || process.env.AWS_ENDPOINT_URL;
      return endpoint
        ? `the endpoint ${endpoint} failed on this call (an EC2 emulator may lack this API)`
        : 'EC2 failed on its side: run the command again in a minute';
    }
    case 'Timeout':
      return `instances did not reach the expected state in time: see spawn-red status ${pipelineId ?? '<pipeline_id>'}`;
    default:
      return `see the message; ${down} removes whatever this pipeline left in EC2`;
  }
}

/** An SDK error (or any error from a call) as an Ec2Error for `api`. */
export function toEc2Error(api: string, e: unknown, pipelineId?: string): Ec2Error {
  if (e instanceof Ec2Error) return e;
  let code = errorCode(e);
  const message = oneLine((e as AwsLikeError)?.message ?? String(e));
  if (/^Region is missing$/i.test(message)) code = 'RegionMissing';
  if (code === 'Error' && (e as AwsLikeError)?.$metadata?.httpStatusCode) code = `HTTP ${(e as AwsLikeError).$metadata!.httpStatusCode}`;
  const detail = code === 'RegionMissing' ? '' : message;
  return new Ec2Error(api, code, detail, hintFor(code, message, pipelineId));
}
