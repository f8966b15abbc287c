import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { shellQuote, SpawnPipeline, SpawnStage } from '../export';
import { PACKAGE_ROOT } from '../runtime';
import { parseGoDuration } from '../go-duration';
import { Ec2PlanError } from './errors';

/**
 * The user data of a stage's instances: a bash script cloud-init runs once at first boot. It
 * installs Node.js 20 (and the EFA software on EFA stages) and this package with npm, writes the
 * pipeline and the flow (carried gzip+base64), runs the peer writer (peer-writer.ts), which waits
 * until every instance of the launch runs and writes /etc/spawn/pipeline-peers.json, the MPI
 * hostfile and the stage's environment, then starts the stage as spawn-red.service (logs in the
 * journal: `journalctl -u spawn-red`). No credentials go in it: the instances use their instance
 * profile. EC2 takes at most 16 KiB of user data.
 */

export const USER_DATA_LIMIT = 16 * 1024;
export const PREFIX = '/opt/spawn-red';
export const WORK_DIR = '/var/lib/spawn-red';
export const SERVICE = 'spawn-red';
const PEER_WAIT_SECONDS = 1800;
/** The Node.js line the instances install when the AMI has none as new (the line this package is tested on). */
export const NODE_MAJOR = 20;

interface PackageJson {
  name: string;
  version: string;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

function packageJson(): PackageJson {
  return JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as PackageJson;
}

/** What the instances install by default: this package, same name and version, from the npm registry. */
export function defaultPackageSpec(): string {
  const p = packageJson();
  return `${p.name}@${p.version}`;
}

/** The Node-RED the instances install beside it (a peer dependency): the 4.x line this package is built and tested with (5.x needs Node 22). */
export function nodeRedSpec(): string {
  const p = packageJson();
  return `node-red@${p.devDependencies?.['node-red'] ?? '^4.1.0'}`;
}

export function packageVersion(): string {
  return packageJson().version;
}

/** gzip, then base64 in lines of 76 characters (what `base64 -d` reads back). */
export function packBlob(text: string): string {
  const b64 = zlib.gzipSync(Buffer.from(text, 'utf8'), { level: 9 }).toString('base64');
  return b64.replace(/(.{76})/g, '$1\n').replace(/\n$/, '');
}

export interface UserDataInput {
  pipeline: SpawnPipeline;
  stage: SpawnStage;
  stageIndex: number;
  region: string;
  launchToken: string;
  packageSpec: string;
  /** The Node-RED flow, when the stages run flow tabs. */
  flow?: unknown[];
  efa: boolean;
  /**
   * The SSM Parameter Store path of this stage's secrets (launcher/ec2/secrets.ts), when the launch
   * ships any: only the path travels here; the peer writer appends the instance's index.
   */
  secretsPath?: string;
  /** The pipeline's CurveZMQ public key (public by design), for the peer file; the secret key goes through SSM. */
  curvePublicKey?: string;
}

/** Heredoc delimiters: a stage command containing one on a line of its own is refused. */
const DELIMS = { data: 'SPAWN_RED_DATA', stage: 'SPAWN_RED_STAGE', unit: 'SPAWN_RED_UNIT' };

/** A stage command that is one simple command (no shell operators) runs with `exec`, so systemd signals it directly. */
function execPrefix(command: string): string {
  return /^[A-Za-z0-9_@%+=:,./'" -]+$/.test(command) && !command.includes('\n') ? 'exec ' : '';
}

/** The script spawn-red.service runs: the stage's environment, then its command, in the work folder. */
export function stageScript(pipelineId: string, stage: SpawnStage): string {
  return [
    '#!/bin/bash',
    `# The command of stage ${stage.stage_id} of pipeline ${pipelineId}, run by ${SERVICE}.service.`,
    '# /etc/spawn/pipeline.env holds spawn\'s variables (UPSTREAM_<STAGE>, STAGE_PEERS, ...) and the stage\'s env.',
    'set -a',
    '# shellcheck source=/dev/null',
    '. /etc/spawn/pipeline.env',
    'set +a',
    `export PATH="${PREFIX}/node_modules/.bin:/usr/local/bin:$PATH"`,
    `cd ${WORK_DIR} || exit 1`,
    `${execPrefix(stage.command)}${stage.command}`,
    '',
  ].join('\n');
}

/** systemd's RuntimeMaxSec for a stage timeout, in whole seconds. */
function timeoutSeconds(stage: SpawnStage): number | undefined {
  if (!stage.timeout) return undefined;
  const d = parseGoDuration(stage.timeout);
  return d.ok && d.nanoseconds > 0n ? Math.max(1, Number(d.nanoseconds / 1_000_000_000n)) : undefined;
}

export function serviceUnit(pipelineId: string, stage: SpawnStage): string {
  const timeout = timeoutSeconds(stage);
  return [
    '[Unit]',
    `Description=spawn-red pipeline ${pipelineId}, stage ${stage.stage_id}`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    'User=spawn-red',
    `WorkingDirectory=${WORK_DIR}`,
    `Environment=HOME=${WORK_DIR}`,
    `ExecStart=${PREFIX}/stage.sh`,
    // RDMA registers memory; many peers mean many sockets.
    'LimitMEMLOCK=infinity',
    'LimitNOFILE=1048576',
    'KillSignal=SIGTERM',
    'TimeoutStopSec=30',
    ...(timeout ? [`RuntimeMaxSec=${timeout}`] : []),
    // /run/spawn-red (tmpfs, 0700, removed when the service stops): `spawn-red run` fetches the instance's secrets there.
    'RuntimeDirectory=spawn-red',
    'RuntimeDirectoryMode=0700',
    'StandardOutput=journal',
    'StandardError=journal',
    `SyslogIdentifier=${SERVICE}`,
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

function heredocSafe(text: string, delimiter: string, what: string): void {
  if (text.split('\n').some((l) => l.trim() === delimiter)) throw new Ec2PlanError([`${what} contains a line "${delimiter}", which the user data cannot carry`]);
}

const SECRET_ENV = /^(AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|AWS_ACCESS_KEY_ID|AWS_SECURITY_TOKEN)$/;

/**
 * Credentials must not travel in user data (anyone allowed ec2:DescribeInstanceAttribute reads it):
 * AWS keys in a stage's env or anywhere in the pipeline or flow, private keys, URLs with a password.
 */
export function secretProblems(pipeline: SpawnPipeline, flow: unknown[] | undefined, packageSpec: string): string[] {
  const problems: string[] = [];
  const fix = 'user data is readable by anyone who may describe the instances: give the instances an instance profile (--instance-profile) and read secrets at run time (e.g. from AWS Secrets Manager)';
  for (const s of pipeline.stages) {
    for (const k of Object.keys(s.env ?? {})) if (SECRET_ENV.test(k)) problems.push(`stage "${s.stage_id}": env ${k} is a credential; ${fix}`);
  }
  const text = JSON.stringify(pipeline) + (flow ? JSON.stringify(flow) : '');
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) problems.push(`the ${flow ? 'flow or pipeline' : 'pipeline'} contains a private key; ${fix}`);
  if (/\b(AKIA|ASIA)[A-Z0-9]{16}\b/.test(text)) problems.push(`the ${flow ? 'flow or pipeline' : 'pipeline'} contains an AWS access key id; ${fix}`);
  if (/^[a-z+]+:\/\/[^/@\s]+:[^/@\s]+@/i.test(packageSpec) || /[?&](token|access_token|_authToken|sig|signature)=/i.test(packageSpec)) {
    problems.push(`--package ${packageSpec.replace(/:\/\/[^@/]+@/, '://…@')}: carries a credential; use a public URL or registry spec (user data is not secret)`);
  }
  return problems;
}

/** The user-data script for one stage's instances. */
export function renderUserData(u: UserDataInput): string {
  const { pipeline, stage } = u;
  const id = pipeline.pipeline_id;
  const stageSh = stageScript(id, stage);
  const unit = serviceUnit(id, stage);
  heredocSafe(stageSh, DELIMS.stage, `stage "${stage.stage_id}": command`);
  const q = shellQuote;
  const lines: string[] = [
    '#!/bin/bash',
    `# spawn-red ${packageVersion()} user data: pipeline ${id}, stage ${stage.stage_id} (stage index ${u.stageIndex}).`,
    `# Installs Node.js ${NODE_MAJOR} and spawn-red, writes the pipeline and the flow, waits until every instance of`,
    '# the pipeline runs, writes /etc/spawn/pipeline-peers.json, then starts the stage as spawn-red.service',
    '# (logs: journalctl -u spawn-red). This script logs to /var/log/cloud-init-output.log.',
    'set -euo pipefail',
    'export HOME="${HOME:-/root}"',
    '',
    `PIPELINE_ID=${q(id)}`,
    `STAGE_ID=${q(stage.stage_id)}`,
    `LAUNCH=${q(u.launchToken)}`,
    `REGION=${q(u.region)}`,
    `PACKAGE_SPEC=${q(u.packageSpec)}`,
    `NODE_RED_SPEC=${q(nodeRedSpec())}`,
    `PREFIX=${PREFIX}`,
    `WORK=${WORK_DIR}`,
    '',
    'log() { echo "spawn-red: $*"; }',
    'retry() {',
    '  local n',
    '  for n in 1 2 3 4; do',
    '    if "$@"; then return 0; fi',
    '    log "try $n failed: $*"',
    '    sleep $((n * 10))',
    '  done',
    '  "$@"',
    '}',
    '',
    'log "pipeline $PIPELINE_ID, stage $STAGE_ID: setting up"',
    'mkdir -p "$PREFIX" "$WORK" /etc/spawn',
    '',
    `# Node.js ${NODE_MAJOR} from nodejs.org, checked against its SHASUMS256.txt (unless the AMI has Node >= ${NODE_MAJOR}).`,
    'node_major() { node -p \'process.versions.node.split(".")[0]\' 2>/dev/null || echo 0; }',
    `if ! command -v node >/dev/null 2>&1 || [ "$(node_major)" -lt ${NODE_MAJOR} ]; then`,
    '  case "$(uname -m)" in',
    '    x86_64) NODE_ARCH=x64 ;;',
    '    aarch64) NODE_ARCH=arm64 ;;',
    '    *) log "no Node.js build for $(uname -m)"; exit 1 ;;',
    '  esac',
    `  NODE_DIST=https://nodejs.org/dist/latest-v${NODE_MAJOR}.x`,
    '  retry curl -fsSL -o /tmp/node-SHASUMS256.txt "$NODE_DIST/SHASUMS256.txt"',
    `  NODE_TAR=$(grep -m 1 -oE "node-v${NODE_MAJOR}\\.[0-9]+\\.[0-9]+-linux-$NODE_ARCH\\.tar\\.gz" /tmp/node-SHASUMS256.txt)`,
    '  retry curl -fsSL -o "/tmp/$NODE_TAR" "$NODE_DIST/$NODE_TAR"',
    '  (cd /tmp && grep " $NODE_TAR\\$" node-SHASUMS256.txt | sha256sum -c -)',
    '  tar -xzf "/tmp/$NODE_TAR" -C /usr/local --strip-components=1 --no-same-owner',
    'fi',
    'export PATH="/usr/local/bin:$PATH"',
    'log "node $(node --version)"',
    '',
  ];
  if (u.efa) {
    lines.push(
      '# EFA: libfabric with the efa provider (/opt/amazon/efa), unless the AMI has it.',
      'if [ ! -d /opt/amazon/efa ]; then',
      '  retry curl -fsSL -o /tmp/aws-efa-installer.tar.gz https://efa-installer.amazonaws.com/aws-efa-installer-latest.tar.gz',
      '  tar -xzf /tmp/aws-efa-installer.tar.gz -C /tmp',
      '  (cd /tmp/aws-efa-installer && ./efa_installer.sh -y)',
      'fi',
      '',
    );
  }
  lines.push(
    'id spawn-red >/dev/null 2>&1 || useradd --system --home-dir "$WORK" --shell /usr/sbin/nologin spawn-red',
    'log "installing $PACKAGE_SPEC and $NODE_RED_SPEC"',
    'retry npm install --prefix "$PREFIX" --omit=dev --no-fund --no-audit --loglevel=warn "$PACKAGE_SPEC" "$NODE_RED_SPEC"',
    'SPAWN_RED_JS=$(readlink -f "$PREFIX/node_modules/.bin/spawn-red")',
    'PACKAGE_DIR=$(dirname "$(dirname "$SPAWN_RED_JS")")',
    '',
    '# The pipeline (and the flow its stages run), gzip + base64.',
    `base64 -d <<'${DELIMS.data}' | gunzip > /etc/spawn/pipeline.json`,
    packBlob(JSON.stringify(pipeline)),
    DELIMS.data,
  );
  if (u.flow) {
    lines.push(`base64 -d <<'${DELIMS.data}' | gunzip > "$WORK/flows.json"`, packBlob(JSON.stringify(u.flow)), DELIMS.data);
  }
  lines.push(
    '',
    `cat > "$PREFIX/stage.sh" <<'${DELIMS.stage}'`,
    stageSh.replace(/\n$/, ''),
    DELIMS.stage,
    'chmod 755 "$PREFIX/stage.sh"',
    `cat > /etc/systemd/system/${SERVICE}.service <<'${DELIMS.unit}'`,
    unit.replace(/\n$/, ''),
    DELIMS.unit,
    '',
    '# Wait until every instance of this launch runs; write the peer file, the hostfile and the environment.',
    'log "waiting for the pipeline\'s instances"',
    'node "$PACKAGE_DIR/dist/launcher/ec2/peer-writer.js" --pipeline /etc/spawn/pipeline.json --stage "$STAGE_ID" \\',
    `  --launch "$LAUNCH" --region "$REGION" --timeout ${PEER_WAIT_SECONDS} \\`,
    ...(u.secretsPath ? [`  --secrets ${q(`ssm:${u.secretsPath}`)} \\`] : []),
    ...(u.curvePublicKey ? [`  --curve-public-key ${q(u.curvePublicKey)} \\`] : []),
    '  --out /etc/spawn/pipeline-peers.json --hostfile /etc/spawn/hostfile --env-out /etc/spawn/pipeline.env',
    '',
    'chown -R spawn-red: "$WORK"',
    'systemctl daemon-reload',
    `systemctl enable --now ${SERVICE}.service`,
    `log "stage $STAGE_ID started: journalctl -u ${SERVICE}"`,
    '',
  );
  return lines.join('\n');
}

/** The user data's size against EC2's limit, as a problem naming the sizes. */
export function sizeProblem(stageId: string, userData: string, flow: unknown[] | undefined): string | undefined {
  const size = Buffer.byteLength(userData, 'utf8');
  if (size <= USER_DATA_LIMIT) return undefined;
  const flowPart = flow ? `; the flow is ${Buffer.byteLength(JSON.stringify(flow))} bytes, ${packBlob(JSON.stringify(flow)).length} compressed and base64-encoded` : '';
  return `stage "${stageId}": user data is ${size} bytes, over EC2's limit of ${USER_DATA_LIMIT} bytes${flowPart}: make the flow smaller (large function or template nodes), or launch a pipeline file whose stages run installed commands`;
}
