import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { PeerFileError } from '../native/peers';
import { hasEc2Pipelines, wantsEc2 } from './ec2/dispatch';
import { downCommand, launchCommand, listCommand, logsCommand, statusCommand } from './local/verbs';
import { RunError, startRun } from './run-stage';
import { checkArgs, exportCommand, graphCommand, validateCommand } from './pipeline-verbs';
import { PACKAGE_ROOT, startRuntime } from './runtime';
import { StageNotFound } from './stage-flow';

/**
 * The EC2 provider, loaded only by the verbs that may need it: the AWS SDK adds ~70 MB to a
 * process, and every pipeline instance runs this CLI (`run`).
 */
// eslint-disable-next-line @typescript-eslint/no-var-requires
const ec2 = (): typeof import('./ec2/verbs') => require('./ec2/verbs');

/**
 * `spawn-red <verb>`: exit 0 on success, 1 on a problem (printed one per line), 2 on bad usage.
 */

interface Verb {
  summary: string;
  usage: string;
  help: string;
  run(args: ParsedArgs): Promise<number>;
}

export interface ParsedArgs {
  positional: string[];
  flags: Record<string, string | boolean>;
}

export class UsageError extends Error {}

/** `--name value`, `--name=value` and bare `--flag`; `known` lists the flags that take a value. */
export function parseArgs(argv: string[], valued: string[]): ParsedArgs {
  const positional: string[] = [];
  const flags: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (eq > 0) flags[name] = a.slice(eq + 1);
      else if (valued.includes(name)) {
        if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value`);
        flags[name] = argv[++i];
      } else flags[name] = true;
    } else if (a === '-h') flags.help = true;
    else if (a === '-o' || a === '-p') {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      flags[a === '-o' ? 'output' : 'port'] = argv[++i];
    } else positional.push(a);
  }
  return { positional, flags };
}

function version(): string {
  return JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')).version;
}

/** Run until SIGINT/SIGTERM, then stop cleanly (flushing what the nodes hold). */
function untilSignal(stop: () => Promise<void>): Promise<number> {
  return new Promise((resolve) => {
    const onSignal = () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      stop().then(
        () => resolve(0),
        (e) => {
          console.error(`spawn-red: stopping failed: ${String(e)}`);
          resolve(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

const verbs: Record<string, Verb> = {
  editor: {
    summary: 'open the Node-RED editor with the spawn-red nodes and an example pipeline',
    usage: 'spawn-red editor [flows.json] [--port 1880] [--host 127.0.0.1] [--user-dir DIR]',
    help: [
      'Starts Node-RED with this package loaded and serves the editor (default http://127.0.0.1:1880/).',
      'Without a flow file it opens ~/.spawn-red/editor/flows.json, created from the push/pull',
      'example on first use. Deploy in the editor runs every stage in this one process.',
    ].join('\n'),
    async run(args) {
      const userDir = String(args.flags['user-dir'] ?? path.join(os.homedir(), '.spawn-red', 'editor'));
      fs.mkdirSync(userDir, { recursive: true });
      let flowFile = args.positional[0];
      if (!flowFile) {
        flowFile = path.join(userDir, 'flows.json');
        if (!fs.existsSync(flowFile)) fs.copyFileSync(path.join(PACKAGE_ROOT, 'examples', 'push-pull.json'), flowFile);
      } else if (!fs.existsSync(flowFile)) {
        console.error(`spawn-red editor: flow file ${flowFile} does not exist`);
        return 1;
      }
      const port = Number(args.flags.port ?? 1880);
      const rt = await startRuntime({ flowFile, userDir, editorPort: port, host: args.flags.host as string | undefined });
      console.log(`spawn-red: editor at ${rt.url} (flow file ${path.resolve(flowFile)}); Ctrl-C to stop`);
      return untilSignal(() => rt.stop());
    },
  },
  run: {
    summary: 'run one stage of a flow headless (or the whole flow), until stopped',
    usage: 'spawn-red run --flow <flows.json> --stage <id> [--peers FILE] [--hostfile[=PATH]] [--user-dir DIR] [--log-level info] [--secrets ssm:/path]\n       spawn-red run <flows.json>',
    help: [
      'Runs a stage\'s tab in Node-RED without the editor or any HTTP port: what every pipeline',
      'instance runs. An external-program stage (its stage node has a command) runs that command.',
      'Peers come from --peers, else $SPAWN_PEERS_FILE, else /etc/spawn/pipeline-peers.json if',
      'present; without one, source stages are looked for on 127.0.0.1. The flow and commands see',
      'spawn\'s variables (UPSTREAM_<STAGE>, UPSTREAM_<STAGE>_ALL, STAGE_PEERS, STAGE_PEER_COUNT, ...)',
      'and the stage\'s env. --hostfile writes spawn\'s MPI hostfile (default /etc/spawn/hostfile).',
      'Without --stage every tab runs. SIGINT or SIGTERM stops it cleanly: queued messages are',
      'flushed within each node\'s linger time before the process exits.',
      '--secrets ssm:/path (or $SPAWN_SECRETS; the EC2 launcher sets it) first fetches the instance\'s',
      'secrets from SSM Parameter Store into a 0700 folder (--secrets-dir) and sets SPAWN_QUIC_DIR / SPAWN_CURVE_KEYS.',
    ].join('\n'),
    async run(args) {
      const flowFile = (args.flags.flow as string | undefined) ?? args.positional[0];
      if (!flowFile || flowFile === 'true') throw new UsageError('run needs a flow file (--flow flows.json)');
      if (args.flags.stage === true) throw new UsageError('--stage needs a stage id');
      let running;
      try {
        running = await startRun({
          flowFile,
          stageId: args.flags.stage as string | undefined,
          peersFile: args.flags.peers as string | undefined,
          hostfile: args.flags.hostfile as string | true | undefined,
          userDir: args.flags['user-dir'] as string | undefined,
          logLevel: args.flags['log-level'] as string | undefined,
          nodesDirs: process.env.SPAWN_RED_NODES_DIRS ? process.env.SPAWN_RED_NODES_DIRS.split(path.delimiter) : undefined,
          secrets: args.flags.secrets as string | undefined,
          secretsDir: args.flags['secrets-dir'] as string | undefined,
        });
      } catch (e) {
        if (e instanceof RunError || e instanceof StageNotFound || e instanceof PeerFileError) {
          console.error(`spawn-red run: ${e.message}`);
          return 1;
        }
        throw e;
      }
      process.send?.({ event: 'started' });
      const onSignal = () => void running.stop();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const code = await running.exited;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      return code;
    },
  },
  export: {
    summary: 'export a flow to a spawn pipeline definition (JSON)',
    usage: 'spawn-red export <flows.json> [-o pipeline.json] [--pipeline-id ID] [--name NAME] [--s3-bucket BUCKET]',
    help: [
      'Writes the spawn pipeline the flow describes (stdout, or the -o file): one stage per tab',
      'with a stage node, dependencies first. The pipeline id defaults to the file name, the name',
      'to the id, the S3 bucket to spawn-red-<id>. Exits 1, writing nothing, if the flow has problems.',
    ].join('\n'),
    async run(args) {
      const problem = checkArgs(args, ['output', 'pipeline-id', 'name', 's3-bucket', 'provider', 'on-failure']);
      if (problem) throw new UsageError(problem);
      return exportCommand(args);
    },
  },
  validate: {
    summary: 'check a flow or a spawn pipeline for problems',
    usage: 'spawn-red validate <flows.json | pipeline.json>',
    help: [
      'Checks a Node-RED flow (a JSON array) as a pipeline of stages, or a spawn pipeline (an',
      'object with "stages") against spawn\'s rules. Prints "ok: N stages, M edges" and exits 0, or',
      'prints the problems one per line (where, field, what is wrong) and exits 1.',
    ].join('\n'),
    async run(args) {
      const problem = checkArgs(args, []);
      if (problem) throw new UsageError(problem);
      return validateCommand(args);
    },
  },
  graph: {
    summary: 'show the stages of a flow or pipeline and the streams between them',
    usage: 'spawn-red graph <flows.json | pipeline.json> [--json]',
    help: [
      'Prints the stages in dependency order with their instances, and one line per stream, e.g.',
      '  producer ──zmq push→pull :5555──▶ consumer',
      '--json prints {"stages": [...], "edges": [...]} instead. Problems go to stderr (exit 1).',
    ].join('\n'),
    async run(args) {
      const problem = checkArgs(args, ['json']);
      if (problem) throw new UsageError(problem);
      return graphCommand(args);
    },
  },
  launch: {
    summary: 'run every stage instance of a flow or pipeline (local processes by default, or on EC2)',
    usage: [
      'spawn-red launch <flows.json | pipeline.json> [--provider local] [--pipeline-id ID] [--flow flows.json] [--on-failure stop|continue] [--detached] [--netns]',
      '       spawn-red launch <flows.json | pipeline.json> --provider ec2 [--region R] [--instance-profile P] [--key-name K] [--ssh-cidr CIDR[,CIDR]]',
      '                        [--subnet S] [--ami AMI] [--package <spec|url>] [--kms-key K] [--pipeline-id ID] [--flow flows.json] [--dry-run [--show-user-data]]',
    ].join('\n'),
    help: [
      'Runs each stage instance as its own process on this machine: its own loopback address',
      '(127.<pipeline>.<stage>.<instance>, so instances of one stage share a port as on separate',
      'hosts), peer-discovery file, log and folder under ~/.spawn-red/pipelines/<pipeline_id>/',
      '($SPAWN_RED_HOME overrides ~/.spawn-red). In the foreground it shows a live status table',
      'and Ctrl-C stops the pipeline; --detached returns once every instance has started.',
      'A pipeline.json runs its stage commands as given (with --flow, Node-RED stages find',
      'flows.json in their folder). on_failure "stop" stops everything when an instance fails;',
      '"continue" keeps the rest running (--on-failure overrides the file). Stage timeouts are',
      'enforced. A pipeline id that is already running is refused. --netns (root): each instance',
      'in a network namespace of its own on a bridge, address 10.<pipeline>.<stage>.<instance>.',
      '',
      '--provider ec2 provisions EC2 instances instead (credentials and region from the AWS SDK chain;',
      'AWS_ENDPOINT_URL_EC2 points it at an emulator): a security group admitting the stream ports only',
      'from itself (SSH only from --ssh-cidr), a cluster placement group for EFA or placement_group "auto"',
      'stages, one RunInstances per stage (EFA interface, spot, IMDSv2, spawn\'s tags), the AMI given or the',
      'newest Amazon Linux 2023. Each instance installs Node.js 20 and this package (--package to install',
      'another build), writes /etc/spawn/pipeline-peers.json once every instance runs, and starts its stage',
      'as the spawn-red systemd service. --instance-profile names a profile allowing ec2:DescribeInstances',
      '(needed with more than one instance). A failure on the way removes everything the launch created.',
      '--dry-run prints every EC2 call with its parameters and makes none.',
      'A flow using QUIC: each instance\'s certificate and key go to SSM Parameter Store (SecureString,',
      '--kms-key for a customer managed key), never into user data; the instance profile must read them.',
    ].join('\n'),
    run: (args) => (args.flags.provider === 'ec2' ? ec2().ec2LaunchCommand(args) : launchCommand(args)),
  },
  status: {
    summary: 'show a launched pipeline: each instance\'s state, pid and message rates',
    usage: 'spawn-red status <pipeline_id> [--json] [--watch] [--provider ec2 [--region R]]',
    help: [
      'Reads the pipeline\'s state folder; works from any shell, and after the launcher is gone.',
      'An ec2 pipeline\'s instances are looked up in EC2 (by the spawn:pipeline-id tag); --provider ec2',
      'looks there for a pipeline launched from another machine.',
    ].join('\n'),
    run: (args) => (wantsEc2(args) ? ec2().ec2StatusCommand(args) : statusCommand(args)),
  },
  logs: {
    summary: 'print the logs of a launched pipeline\'s instances',
    usage: 'spawn-red logs <pipeline_id> [--stage S] [--follow]',
    help: 'Each line is prefixed with stage/instance. --follow keeps printing new lines until Ctrl-C.',
    run: (args) => (wantsEc2(args) ? ec2().ec2LogsCommand(args) : logsCommand(args)),
  },
  list: {
    summary: 'list launched pipelines',
    usage: 'spawn-red list [--json]',
    help: 'Every pipeline with a state folder, running or not, local and ec2.',
    run: async (args) => (hasEc2Pipelines() ? ec2().listAllCommand(args) : listCommand(args)),
  },
  certs: {
    summary: 'make a QUIC certificate authority and certificates for machines the launcher does not set up',
    usage: 'spawn-red certs <dir> [--names a,b,...]',
    help: [
      'Makes <dir>/ca (the CA; its key stays there, mode 0600) unless it exists, and <dir>/<name> for each',
      'name: ca.pem, cert.pem, key.pem. Copy <dir>/<name> to a machine and set SPAWN_QUIC_DIR to it: its',
      'QUIC nodes then trust exactly the peers with a certificate from this CA. `spawn-red launch`',
      '(local) does this by itself, one CA per pipeline.',
    ].join('\n'),
    async run(args) {
      if (args.positional.length !== 1) throw new UsageError('name one directory');
      return require('./certs-verb').certsCommand(args);
    },
  },
  down: {
    summary: 'stop every instance of a launched pipeline (logs stay)',
    usage: 'spawn-red down <pipeline_id> [--provider ec2 [--region R] [--dry-run]]',
    help: [
      'Stops the supervisor, which stops each instance (SIGTERM, then SIGKILL after 20 s), and',
      'waits until none runs. Cleans up after a launcher that was killed. Logs and state stay.',
      'An ec2 pipeline: terminates its instances (found by tag), waits until they are terminated, then',
      'deletes its placement group and security group; idempotent, and it also cleans up after a',
      'launch that failed or was killed half-way. --provider ec2 finds a pipeline by tag alone.',
    ].join('\n'),
    run: (args) => (wantsEc2(args) ? ec2().ec2DownCommand(args) : downCommand(args)),
  },
};

const VALUED = ['port', 'host', 'user-dir', 'log-level', 'output', 'flow', 'stage', 'peers', 'pipeline-id', 'name', 's3-bucket', 'provider', 'on-failure',
  'region', 'key-name', 'subnet', 'instance-profile', 'package', 'ssh-cidr', 'ami', 'names',
  'secrets', 'secrets-dir', 'kms-key'];

function mainHelp(): string {
  const width = Math.max(...Object.keys(verbs).map((v) => v.length));
  return [
    `spawn-red ${version()}: streaming pipelines drawn in Node-RED, run on one machine or many`,
    '',
    'Usage: spawn-red <verb> [options]     spawn-red <verb> --help for a verb\'s options',
    '',
    'Verbs:',
    ...Object.entries(verbs).map(([name, v]) => `  ${name.padEnd(width)}  ${v.summary}`),
    '',
    'Options: --help, --version',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [verbName, ...rest] = argv;
  if (!verbName || verbName === '--help' || verbName === '-h' || verbName === 'help') {
    console.log(mainHelp());
    return 0;
  }
  if (verbName === '--version') {
    console.log(version());
    return 0;
  }
  const verb = verbs[verbName];
  if (!verb) {
    console.error(`spawn-red: unknown verb "${verbName}"\n\n${mainHelp()}`);
    return 2;
  }
  try {
    const args = parseArgs(rest, VALUED);
    if (args.flags.help) {
      console.log(`Usage: ${verb.usage}\n\n${verb.help}`);
      return 0;
    }
    return await verb.run(args);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`spawn-red ${verbName}: ${e.message}\nUsage: ${verb.usage}`);
      return 2;
    }
    console.error(`spawn-red ${verbName}: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
