import * as fs from 'fs';
import type { ParsedArgs } from '../cli';
import { pipelineDir, stateFile } from '../local/state';
import { ec2StatePath, listEc2States } from './state';

/**
 * Which provider a pipeline id belongs to, for cli.ts's dispatch of status, down, logs and list.
 * Only files are read here (no AWS SDK), so the local provider's verbs start as fast as before;
 * cli.ts loads the ec2 verbs (and the SDK) only when they are needed.
 */

/** The ec2 provider owns the id: its ec2.json exists, and is newer than a local state.json of the same id. */
export function isEc2Pipeline(id: string | undefined, env: NodeJS.ProcessEnv = process.env): boolean {
  if (!id) return false;
  const ec2 = ec2StatePath(id, env);
  if (!fs.existsSync(ec2)) return false;
  const local = stateFile(pipelineDir(id, env));
  if (!fs.existsSync(local)) return true;
  return fs.statSync(ec2).mtimeMs >= fs.statSync(local).mtimeMs;
}

/** Dispatch rule for status, down and logs: `--provider` decides, else who owns the id. */
export function wantsEc2(args: ParsedArgs): boolean {
  const provider = args.flags.provider;
  if (provider === 'ec2') return true;
  if (provider === 'local') return false;
  return isEc2Pipeline(args.positional[0]);
}

/** Whether any ec2 pipeline has state here (cli.ts keeps the local `list` otherwise). */
export function hasEc2Pipelines(env: NodeJS.ProcessEnv = process.env): boolean {
  return listEc2States(env).length > 0;
}
