import { execFileSync } from 'child_process';
import type { InstanceState, PipelineState } from './state';

/**
 * `launch --netns` (root only): each instance in a network namespace of its own, joined to the
 * others by a bridge, with the address 10.<block>.<stage+1>.<index+1>/16 on its veth: separate
 * hosts as far as the network stack is concerned (own loopback, own ports, real routing), for
 * tests that need that. Names stay within Linux's 15-character limit for interfaces.
 */

export const netnsName = (block: number, stageIndex: number, index: number) => `sr${block}-${stageIndex + 1}-${index + 1}`;
export const netnsAddress = (block: number, stageIndex: number, index: number) => `10.${block}.${stageIndex + 1}.${index + 1}`;
const bridgeName = (block: number) => `srbr${block}`;
const hostVeth = (block: number, stageIndex: number, index: number) => `srv${block}x${stageIndex + 1}x${index + 1}`;

export class NetnsError extends Error {}

function ip(...args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim();
    throw new NetnsError(`ip ${args.join(' ')}: ${stderr || (e as Error).message}`);
  }
}

export function checkNetnsAllowed(): void {
  if (process.getuid?.() !== 0) throw new NetnsError('--netns needs root (it creates network namespaces, veth pairs and a bridge)');
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    throw new NetnsError('--netns needs the ip command (Debian: apt-get install iproute2)');
  }
}

/** Create the bridge and one namespace per instance; undoes what it made if a step fails. */
export function setUpNetns(state: PipelineState): void {
  const br = bridgeName(state.block);
  try {
    ip('link', 'add', br, 'type', 'bridge');
    ip('link', 'set', br, 'up');
    for (const inst of state.instances) {
      const ns = inst.netns!;
      const veth = hostVeth(state.block, inst.stage_index, inst.index);
      ip('netns', 'add', ns);
      ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      ip('link', 'set', veth, 'master', br);
      ip('link', 'set', veth, 'up');
      ip('-n', ns, 'addr', 'add', `${inst.address}/16`, 'dev', 'eth0');
      ip('-n', ns, 'link', 'set', 'eth0', 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
  } catch (e) {
    tearDownNetns(state);
    throw e;
  }
}

/** Remove the namespaces (their veths go with them) and the bridge; quiet about what is already gone. */
export function tearDownNetns(state: PipelineState): void {
  for (const inst of state.instances) {
    if (!inst.netns) continue;
    try {
      ip('netns', 'del', inst.netns);
    } catch {
      /* already gone */
    }
  }
  try {
    ip('link', 'del', bridgeName(state.block));
  } catch {
    /* already gone */
  }
}

/** The command line of an instance that runs inside its namespace. */
export function inNetns(inst: InstanceState, argv: string[]): string[] {
  return inst.netns ? ['ip', 'netns', 'exec', inst.netns, ...argv] : argv;
}
