import {
  AuthorizeSecurityGroupIngressCommand,
  AuthorizeSecurityGroupIngressCommandInput,
  AuthorizeSecurityGroupIngressCommandOutput,
  CreatePlacementGroupCommand,
  CreatePlacementGroupCommandInput,
  CreatePlacementGroupCommandOutput,
  CreateSecurityGroupCommand,
  CreateSecurityGroupCommandInput,
  CreateSecurityGroupCommandOutput,
  CreateTagsCommand,
  CreateTagsCommandInput,
  CreateTagsCommandOutput,
  DeletePlacementGroupCommand,
  DeletePlacementGroupCommandInput,
  DeletePlacementGroupCommandOutput,
  DeleteSecurityGroupCommand,
  DeleteSecurityGroupCommandInput,
  DeleteSecurityGroupCommandOutput,
  DescribeImagesCommand,
  DescribeImagesCommandInput,
  DescribeImagesCommandOutput,
  DescribeInstancesCommand,
  DescribeInstancesCommandInput,
  DescribeInstancesCommandOutput,
  DescribeInstanceTypeOfferingsCommand,
  DescribeInstanceTypeOfferingsCommandInput,
  DescribeInstanceTypeOfferingsCommandOutput,
  DescribeInstanceTypesCommand,
  DescribeInstanceTypesCommandInput,
  DescribeInstanceTypesCommandOutput,
  DescribePlacementGroupsCommand,
  DescribePlacementGroupsCommandInput,
  DescribePlacementGroupsCommandOutput,
  DescribeSecurityGroupsCommand,
  DescribeSecurityGroupsCommandInput,
  DescribeSecurityGroupsCommandOutput,
  DescribeSubnetsCommand,
  DescribeSubnetsCommandInput,
  DescribeSubnetsCommandOutput,
  EC2Client,
  Instance,
  RunInstancesCommand,
  RunInstancesCommandInput,
  RunInstancesCommandOutput,
  TerminateInstancesCommand,
  TerminateInstancesCommandInput,
  TerminateInstancesCommandOutput,
  waitUntilInstanceRunning,
  waitUntilInstanceTerminated,
} from '@aws-sdk/client-ec2';
import { Ec2Error, errorCode, hintFor, isTransient, oneLine, toEc2Error } from './errors';

/**
 * The EC2 calls the ec2 provider makes, in one place: each call is retried on throttling and
 * transient faults (with backoff; our own policy, so it is the same under the SDK and under a
 * mock), AWS errors become one-line Ec2Errors, and in a dry run every call is printed with its
 * parameters and none is made. Waiting uses the SDK's waiters, watched for a progress display.
 */

/** Operation name → [input, output]: the EC2 API this provider uses, and nothing else. */
export interface Ec2Calls {
  DescribeSubnets: [DescribeSubnetsCommandInput, DescribeSubnetsCommandOutput];
  DescribeInstanceTypeOfferings: [DescribeInstanceTypeOfferingsCommandInput, DescribeInstanceTypeOfferingsCommandOutput];
  DescribeInstanceTypes: [DescribeInstanceTypesCommandInput, DescribeInstanceTypesCommandOutput];
  DescribeImages: [DescribeImagesCommandInput, DescribeImagesCommandOutput];
  CreateSecurityGroup: [CreateSecurityGroupCommandInput, CreateSecurityGroupCommandOutput];
  AuthorizeSecurityGroupIngress: [AuthorizeSecurityGroupIngressCommandInput, AuthorizeSecurityGroupIngressCommandOutput];
  DescribeSecurityGroups: [DescribeSecurityGroupsCommandInput, DescribeSecurityGroupsCommandOutput];
  DeleteSecurityGroup: [DeleteSecurityGroupCommandInput, DeleteSecurityGroupCommandOutput];
  CreatePlacementGroup: [CreatePlacementGroupCommandInput, CreatePlacementGroupCommandOutput];
  DescribePlacementGroups: [DescribePlacementGroupsCommandInput, DescribePlacementGroupsCommandOutput];
  DeletePlacementGroup: [DeletePlacementGroupCommandInput, DeletePlacementGroupCommandOutput];
  RunInstances: [RunInstancesCommandInput, RunInstancesCommandOutput];
  CreateTags: [CreateTagsCommandInput, CreateTagsCommandOutput];
  DescribeInstances: [DescribeInstancesCommandInput, DescribeInstancesCommandOutput];
  TerminateInstances: [TerminateInstancesCommandInput, TerminateInstancesCommandOutput];
}
export type Ec2Op = keyof Ec2Calls;

const COMMANDS: { [K in Ec2Op]: new (input: Ec2Calls[K][0]) => unknown } = {
  DescribeSubnets: DescribeSubnetsCommand,
  DescribeInstanceTypeOfferings: DescribeInstanceTypeOfferingsCommand,
  DescribeInstanceTypes: DescribeInstanceTypesCommand,
  DescribeImages: DescribeImagesCommand,
  CreateSecurityGroup: CreateSecurityGroupCommand,
  AuthorizeSecurityGroupIngress: AuthorizeSecurityGroupIngressCommand,
  DescribeSecurityGroups: DescribeSecurityGroupsCommand,
  DeleteSecurityGroup: DeleteSecurityGroupCommand,
  CreatePlacementGroup: CreatePlacementGroupCommand,
  DescribePlacementGroups: DescribePlacementGroupsCommand,
  DeletePlacementGroup: DeletePlacementGroupCommand,
  RunInstances: RunInstancesCommand,
  CreateTags: CreateTagsCommand,
  DescribeInstances: DescribeInstancesCommand,
  TerminateInstances: TerminateInstancesCommand,
};

export interface RetryPolicy {
  /** Tries in all, the first included. */
  attempts: number;
  baseMs: number;
  capMs: number;
}

/** The SDK waiters' settings, in seconds (fractions allowed). */
export interface WaitPolicy {
  minDelay: number;
  maxDelay: number;
  maxWaitTime: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, baseMs: 500, capMs: 20_000 };
export const DEFAULT_WAIT: WaitPolicy = { minDelay: 5, maxDelay: 15, maxWaitTime: 900 };

/** How many instances are in each state, for the progress line. */
export interface WaitProgress {
  total: number;
  states: Record<string, number>;
}

export interface Ec2ApiOptions {
  /** The client (a real one, or one under aws-sdk-client-mock). Not needed for a dry run. */
  client?: EC2Client;
  dryRun?: boolean;
  /** Where a dry run prints the calls. */
  print?: (text: string) => void;
  retry?: Partial<RetryPolicy>;
  wait?: Partial<WaitPolicy>;
  /** For the `spawn-red down <id>` advice in error hints. */
  pipelineId?: string;
  sleep?: (ms: number) => Promise<void>;
}

export interface CallOptions {
  /** Shown after the API name in errors and in the dry run, e.g. `stage "consumer"`. */
  what?: string;
  /** Error codes that are retried for this call (eventual consistency right after a create). */
  retryOn?: string[];
  /** Error codes that mean "already done": the call returns undefined instead of failing. */
  okOn?: string[];
}

/** The SDK's "versions after early January 2027 need Node 22" notice is about versions we pin below. */
export function quietSdkNotice(): void {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
}

/**
 * An EC2 client from the standard SDK chain (credentials, region, AWS_ENDPOINT_URL_EC2 /
 * AWS_ENDPOINT_URL), with the SDK's own retries off: Ec2Api retries, so that a throttled call is
 * not retried by two layers.
 */
export function makeClient(region?: string): EC2Client {
  quietSdkNotice();
  return new EC2Client({ region: region || undefined, maxAttempts: 1 });
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Something to show in a dry run where a value would come from an earlier response. */
export const placeholder = (what: string) => `<${what}>`;

/** Responses a dry run pretends to get, so the launch can go on printing the calls that follow. */
function dryResponse(op: Ec2Op, input: Record<string, unknown>): unknown {
  switch (op) {
    case 'DescribeSubnets': {
      const ids = input.SubnetIds as string[] | undefined;
      if (ids?.length) return { Subnets: ids.map((id) => ({ SubnetId: id, VpcId: placeholder(`VPC of ${id}`), AvailabilityZone: placeholder(`zone of ${id}`) })) };
      return { Subnets: [{ SubnetId: placeholder('default subnet'), VpcId: placeholder('default VPC'), AvailabilityZone: placeholder('zone'), DefaultForAz: true }] };
    }
    case 'DescribeInstanceTypeOfferings': {
      const types = ((input.Filters as Array<{ Name: string; Values: string[] }> | undefined) ?? []).find((f) => f.Name === 'instance-type')?.Values ?? [];
      return { InstanceTypeOfferings: types.map((t) => ({ InstanceType: t, Location: placeholder('zone'), LocationType: 'availability-zone' })) };
    }
    case 'DescribeInstanceTypes':
      return {
        InstanceTypes: ((input.InstanceTypes as string[]) ?? []).map((t) => ({
          InstanceType: t,
          ProcessorInfo: { SupportedArchitectures: [guessArchitecture(t)] },
          NetworkInfo: { EfaSupported: true },
        })),
      };
    case 'DescribeImages': {
      const arch = ((input.Filters as Array<{ Name: string; Values: string[] }> | undefined) ?? []).find((f) => f.Name === 'architecture')?.Values[0] ?? 'x86_64';
      return { Images: [{ ImageId: placeholder(`newest Amazon Linux 2023 ${arch} AMI`), Name: 'al2023-ami-2023', CreationDate: '', Architecture: arch }] };
    }
    case 'CreateSecurityGroup':
      return { GroupId: placeholder('security group id') };
    case 'CreatePlacementGroup':
      return { PlacementGroup: { GroupName: input.GroupName, Strategy: input.Strategy } };
    case 'RunInstances': {
      const n = Number(input.MinCount ?? 1);
      const stage = ((input.TagSpecifications as Array<{ Tags: Array<{ Key: string; Value: string }> }> | undefined)?.[0]?.Tags ?? []).find((t) => t.Key === 'spawn:stage-id')?.Value ?? 'stage';
      return { Instances: Array.from({ length: n }, (_, i) => ({ InstanceId: placeholder(`${stage} instance ${i}`), AmiLaunchIndex: i, State: { Name: 'pending' } })) };
    }
    case 'DescribeInstances':
      return { Reservations: [] };
    case 'DescribeSecurityGroups':
      return { SecurityGroups: [] };
    case 'DescribePlacementGroups':
      return { PlacementGroups: [] };
    default:
      return {};
  }
}

/**
 * Graviton (arm64) instance families: a1, and families whose generation digit is followed by a
 * `g` (c7g, m6gd, r8g, t4g, im4gn, is4gen, hpc7g, x2gd). Only for showing a dry run: a real launch
 * asks DescribeInstanceTypes.
 */
export function guessArchitecture(instanceType: string): 'x86_64' | 'arm64' {
  const family = instanceType.split('.')[0];
  return family === 'a1' || /^[a-z]+\d+g/.test(family) ? 'arm64' : 'x86_64';
}

/** JSON for the dry run: nested values inline where they fit in a line, UserData (base64, up to 16 KiB) summarised. */
export function showInput(input: unknown, indent = ''): string {
  const value = (key: string, v: unknown) =>
    key === 'UserData' && typeof v === 'string' ? placeholder(`base64 of ${Buffer.from(v, 'base64').length} bytes of user data (--show-user-data prints it)`) : v;
  const render = (v: unknown, pad: string): string => {
    const inline = JSON.stringify(v, (k, x) => value(k, x));
    if (inline === undefined || typeof v !== 'object' || v === null || pad.length + inline.length <= 100) return inline ?? 'null';
    const inner = `${pad}  `;
    if (Array.isArray(v)) return `[\n${v.map((x) => inner + render(x, inner)).join(',\n')}\n${pad}]`;
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    return `{\n${entries.map(([k, x]) => `${inner}${JSON.stringify(k)}: ${render(value(k, x), inner)}`).join(',\n')}\n${pad}}`;
  };
  return render(input, indent);
}

export class Ec2Api {
  readonly dryRun: boolean;
  readonly retry: RetryPolicy;
  readonly wait: WaitPolicy;
  private readonly print: (text: string) => void;
  private readonly sleep: (ms: number) => Promise<void>;
  /** Calls made (or, in a dry run, printed), in order: for tests and for the dry run's summary. */
  readonly log: Array<{ op: string; input: unknown }> = [];

  constructor(private readonly options: Ec2ApiOptions) {
    this.dryRun = Boolean(options.dryRun);
    if (!this.dryRun && !options.client) throw new Error('Ec2Api needs a client');
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.wait = { ...DEFAULT_WAIT, ...options.wait };
    this.print = options.print ?? ((t) => console.log(t));
    this.sleep = options.sleep ?? defaultSleep;
  }

  get client(): EC2Client {
    return this.options.client!;
  }

  get pipelineId(): string | undefined {
    return this.options.pipelineId;
  }

  private label(op: string, what?: string): string {
    return what ? `${op} (${what})` : op;
  }

  /** One EC2 call, retried while AWS throttles or fails transiently. */
  async call<K extends Ec2Op>(op: K, input: Ec2Calls[K][0], opts: CallOptions = {}): Promise<Ec2Calls[K][1]> {
    this.log.push({ op, input });
    if (this.dryRun) {
      this.print(`${this.label(op, opts.what)} ${showInput(input)}`);
      return dryResponse(op, input as Record<string, unknown>) as Ec2Calls[K][1];
    }
    const { attempts, baseMs, capMs } = this.retry;
    for (let attempt = 1; ; attempt++) {
      try {
        const command = new COMMANDS[op](input);
        return (await this.client.send(command as never)) as Ec2Calls[K][1];
      } catch (e) {
        const code = errorCode(e);
        if (opts.okOn?.includes(code)) return undefined as unknown as Ec2Calls[K][1];
        const again = isTransient(e) || Boolean(opts.retryOn?.includes(code));
        if (!again || attempt >= attempts) throw toEc2Error(this.label(op, opts.what), e, this.options.pipelineId);
        const ceiling = Math.min(capMs, baseMs * 2 ** (attempt - 1));
        await this.sleep(ceiling / 2 + (Math.random() * ceiling) / 2);
      }
    }
  }

  /**
   * Wait with the SDK waiter until every instance runs (or is terminated), reporting the states
   * seen on each poll. A poll failing for a reason that will not pass (permissions, credentials)
   * stops the wait at once instead of polling until the timeout. Resolves with the instances as
   * last seen.
   */
  async waitFor(target: 'running' | 'terminated', instanceIds: string[], progress: (p: WaitProgress) => void, abortSignal?: AbortSignal): Promise<Instance[]> {
    const waiterName = target === 'running' ? 'waitUntilInstanceRunning' : 'waitUntilInstanceTerminated';
    const { minDelay, maxDelay, maxWaitTime } = this.wait;
    this.log.push({ op: waiterName, input: { InstanceIds: instanceIds } });
    if (instanceIds.length === 0) return [];
    if (this.dryRun) {
      this.print(`${waiterName}: DescribeInstances ${showInput({ InstanceIds: instanceIds })} every ${minDelay}–${maxDelay} s until every instance is ${target} (at most ${maxWaitTime} s)`);
      return instanceIds.map((InstanceId) => ({ InstanceId, State: { Name: target } }) as Instance);
    }
    let last: Instance[] = [];
    let fatal: unknown;
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    abortSignal?.addEventListener('abort', onAbort);
    const client = this.client;
    // The waiter only calls `send`: watch its DescribeInstances responses through a thin view of the client.
    const watched = Object.create(client) as EC2Client;
    const send = async (command: unknown) => {
      try {
        const out = (await client.send(command as never)) as DescribeInstancesCommandOutput;
        last = (out.Reservations ?? []).flatMap((r) => r.Instances ?? []);
        const states: Record<string, number> = {};
        for (const i of last) states[i.State?.Name ?? 'unknown'] = (states[i.State?.Name ?? 'unknown'] ?? 0) + 1;
        progress({ total: instanceIds.length, states });
        return out;
      } catch (e) {
        // Right after RunInstances the ids may not be known yet (eventual consistency): the waiter retries.
        if (!isTransient(e) && errorCode(e) !== 'InvalidInstanceID.NotFound') {
          fatal = e;
          stop.abort();
        }
        throw e;
      }
    };
    (watched as unknown as { send: typeof send }).send = send;
    const params = { client: watched, minDelay, maxDelay, maxWaitTime, abortSignal: stop.signal };
    try {
      if (target === 'running') await waitUntilInstanceRunning(params, { InstanceIds: instanceIds });
      else await waitUntilInstanceTerminated(params, { InstanceIds: instanceIds });
      return last;
    } catch (e) {
      if (fatal) throw toEc2Error(`DescribeInstances (${waiterName})`, fatal, this.options.pipelineId);
      if (abortSignal?.aborted) throw new Ec2Error(waiterName, 'Interrupted', '', 'stopped on request');
      const name = (e as Error)?.name;
      const counts = last.filter((i) => i.State?.Name === target).length;
      if (name === 'TimeoutError') {
        throw new Ec2Error(waiterName, 'Timeout', `${counts} of ${instanceIds.length} instances ${target} after ${maxWaitTime} s`, hintFor('Timeout', '', this.options.pipelineId));
      }
      // FAILURE: an instance reached a state it cannot leave (e.g. terminated while we wait for running).
      const bad = last.find((i) => i.State?.Name !== target && i.State?.Name !== 'pending');
      if (bad) {
        const reason = bad.StateReason?.Code ?? bad.StateReason?.Message ?? '';
        const code = reason ? reason.replace(/^(Server|Client)\./, '') : 'InstanceFailed';
        const tags = Object.fromEntries((bad.Tags ?? []).map((t) => [t.Key, t.Value]));
        const who = tags['spawn:stage-id'] ? ` (stage "${tags['spawn:stage-id']}"${tags['spawn:instance-index'] !== undefined ? ` instance ${tags['spawn:instance-index']}` : ''})` : '';
        const message = oneLine(bad.StateReason?.Message ?? bad.StateTransitionReason ?? '');
        throw new Ec2Error(waiterName, reason || 'InstanceFailed', `instance ${bad.InstanceId}${who} is ${bad.State?.Name}${message ? `: ${message}` : ''}`, hintFor(code, message, this.options.pipelineId));
      }
      // A failure the waiter saw without an instance to blame (its own message is a JSON dump: not for users).
      throw new Ec2Error(waiterName, 'WaiterFailed', `not every instance became ${target} (${counts} of ${instanceIds.length})`, hintFor('Timeout', '', this.options.pipelineId));
    } finally {
      abortSignal?.removeEventListener('abort', onAbort);
    }
  }
}
