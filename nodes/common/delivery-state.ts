import * as path from 'path';
import { WatermarkFile, WatermarkFileError } from '../../native/delivery/watermarks';
import { ConfigError } from './config';

/**
 * Where an exactly-once receiving node keeps its completed watermarks (native/delivery/watermarks.ts),
 * so that, killed and restarted, it does not deliver again what it had finished:
 *
 * - $SPAWN_DELIVERY_DIR when set. `spawn-red run` without --user-dir sets it, for a launched stage
 *   (it has a peer file), to ~/.spawn-red/delivery/<pipeline_id> ($SPAWN_RED_HOME overriding
 *   ~/.spawn-red): its Node-RED user directory is then a temporary one, gone with the process. On
 *   EC2 that is /var/lib/spawn-red/.spawn-red/delivery/<pipeline_id>.
 * - else the Node-RED user directory's spawn-delivery/ folder (the local launcher gives every
 *   instance its own user directory in the pipeline's state folder; a bare Node-RED has its own).
 * - else (a runtime embedded without a user directory, such as a test harness) nowhere: the
 *   watermarks live in memory only, and a crash may deliver the last finished messages again.
 *
 * The file is named after the stage instance (pipeline, stage, index from the peer file's
 * environment, when there is one) and the node id, so instances sharing a folder on one machine
 * never share a file; and a restarted instance, having the same names, finds its own.
 */

export function watermarkPath(nodeId: string, env: NodeJS.ProcessEnv = process.env, userDir?: string): string | undefined {
  const dir = env.SPAWN_DELIVERY_DIR || (userDir ? path.join(userDir, 'spawn-delivery') : undefined);
  if (!dir) return undefined;
  const instance =
    env.SPAWN_STAGE_ID !== undefined && env.SPAWN_INSTANCE_INDEX !== undefined
      ? `${env.SPAWN_PIPELINE_ID ? `${env.SPAWN_PIPELINE_ID}.` : ''}${env.SPAWN_STAGE_ID}.${env.SPAWN_INSTANCE_INDEX}-`
      : '';
  return path.join(dir, `${(instance + nodeId).replace(/[^A-Za-z0-9._-]/g, '_')}.watermarks`);
}

/**
 * SPAWN_DELIVERY_STATE: `file` (default), or `off`: watermarks in memory only (a crash may then
 * deliver the last finished messages again; for measurements, or where there is no disk).
 */
export function stateWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.SPAWN_DELIVERY_STATE !== 'off';
}

/** SPAWN_DELIVERY_SYNC=1: every watermark written through to the disk (O_DSYNC), for machine crashes too. */
export function syncWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return /^(1|true|yes)$/i.test(env.SPAWN_DELIVERY_SYNC ?? '');
}

/**
 * Opens the node's watermark file; a folder that cannot be written, or a file another live process
 * has, is a ConfigError naming the node and the path (the node does not start: running on would
 * quietly weaken exactly-once to "once unless it crashes").
 */
export function openWatermarks(node: { id: string; name?: string; warn(text: string): void }, userDir: string | undefined, env: NodeJS.ProcessEnv = process.env): WatermarkFile | undefined {
  const file = stateWanted(env) ? watermarkPath(node.id, env, userDir) : undefined;
  if (!file) return undefined;
  const who = `${node.name ? `"${node.name}" ` : ''}(${node.id})`;
  try {
    return WatermarkFile.open(file, { sync: syncWanted(env), warn: (text) => node.warn(`exactly-once: ${text}`) });
  } catch (e) {
    const text = e instanceof WatermarkFileError ? e.message : String(e);
    throw new ConfigError(`exactly-once: node ${who} cannot keep what it has finished (so that a restart does not deliver it again): ${text}. Make the folder writable, or set SPAWN_DELIVERY_DIR to one that is`);
  }
}
