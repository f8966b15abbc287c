import type { Node, NodeAPI } from 'node-red';
import type { WatermarkFile } from '../../native/delivery/watermarks';
import { Completion, trackCompletion } from './completion';
import { openWatermarks } from './delivery-state';

export interface ExactlyOnceReceiver {
  /** Where the node's completed watermarks outlive a crash; undefined: in memory only. */
  watermarks?: WatermarkFile;
  /** Acknowledges when the wired nodes are done; undefined: when a message is handed over. */
  completion?: Completion;
  /** Releases both: on close, and when the rest of the node's setup fails. */
  stop(): void;
}

/**
 * What a receiving node in exactly-once mode sets up before its stream, the same for the pattern
 * nodes and efa in. First the watermark file (./delivery-state.ts: what it finished outlives a
 * crash), so a folder that cannot be written stops the node before a completion hook exists; then
 * acknowledgement when the wired nodes are done (./completion.ts). A hook left behind would refuse
 * the node's next deploy: `stop` releases both, and a failing second step releases the first.
 */
export function exactlyOnceReceiver(RED: NodeAPI, node: Node, wires: unknown): ExactlyOnceReceiver {
  const watermarks = openWatermarks(node, RED.settings.userDir as string | undefined);
  let completion: Completion | undefined;
  try {
    completion = trackCompletion(RED, node, wires);
  } catch (e) {
    watermarks?.close();
    throw e;
  }
  return {
    watermarks,
    completion,
    stop: () => {
      completion?.stop();
      watermarks?.close();
    },
  };
}
