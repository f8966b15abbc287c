import * as fs from 'fs';
import * as path from 'path';

/**
 * Node-RED's core node files a headless stage does not use. A runtime loads all ~37 of them
 * (MQTT, HTTP, WebSocket, parsers…) and keeps them on its heap: 27 MB live against 15 MB
 * without them. Every full garbage collection marks that heap, and a stage streaming large
 * Buffers runs one for every few tens of MB received, so a smaller heap is a faster stage (and
 * ~30 MB less resident memory). The editor (`spawn-red editor`) loads everything.
 */

/** Kept even when the flow does not name them: Node-RED itself relies on them. */
const ALWAYS_KEEP = new Set(['unknown', 'global-config', 'junction', 'comment']);

function coreNodesDir(): string | undefined {
  try {
    const nodeRed = path.dirname(require.resolve('node-red/package.json'));
    const pkg = require.resolve('@node-red/nodes/package.json', { paths: [nodeRed] });
    return path.join(path.dirname(pkg), 'core');
  } catch {
    return undefined;
  }
}

/** File basename → the types it registers, for every core node file. */
export function coreNodeTypes(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const dir = coreNodesDir();
  if (!dir) return out;
  for (const group of fs.readdirSync(dir)) {
    const groupDir = path.join(dir, group);
    if (!fs.statSync(groupDir).isDirectory()) continue;
    for (const file of fs.readdirSync(groupDir)) {
      if (!file.endsWith('.js')) continue;
      const text = fs.readFileSync(path.join(groupDir, file), 'utf8');
      const types = [...text.matchAll(/registerType\(\s*["']([^"']+)["']/g)].map((m) => m[1]);
      out.set(file, types);
    }
  }
  return out;
}

/** Core node files none of whose types appear in `flow`: the `nodesExcludes` setting for it. */
export function unusedCoreNodeFiles(flow: Array<{ type: string }>): string[] {
  const used = new Set(flow.map((n) => n.type));
  const unused: string[] = [];
  for (const [file, types] of coreNodeTypes()) {
    // A file whose types could not be read is kept: excluding a node the flow needs would stop it.
    if (types.length === 0 || types.some((t) => used.has(t) || ALWAYS_KEEP.has(t))) continue;
    unused.push(file);
  }
  return unused;
}
