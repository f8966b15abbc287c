import type { NodeAPI } from 'node-red';
import type { Request, Response } from 'express';
import { analyseFlow } from '../../launcher/editor-analysis';

/**
 * The admin route behind the editor's "spawn" sidebar: POST the flow as it stands in the editor
 * (deployed or not) and get back what `spawn-red export` would write for it, the problems with
 * the nodes they are about, and the stage graph. Reading a flow needs the same permission as
 * Node-RED's own GET /flows.
 */
export const ANALYSIS_PATH = '/spawn-red/pipeline';

export function registerAnalysisRoute(RED: NodeAPI): void {
  // The pipeline id comes from the flow file's name, as with `spawn-red export <flow file>`.
  const flowFile = (): string => {
    const f = (RED.settings as unknown as { flowFile?: unknown }).flowFile;
    return typeof f === 'string' && f ? f : 'flows.json';
  };
  RED.httpAdmin.post(ANALYSIS_PATH, RED.auth.needsPermission('flows.read'), (req: Request, res: Response) => {
    const body = req.body as unknown;
    const flow = Array.isArray(body) ? body : body && typeof body === 'object' ? (body as { flow?: unknown }).flow : undefined;
    if (!Array.isArray(flow)) {
      res.status(400).json({ error: 'expected a Node-RED flow: a JSON array of nodes, or {"flow": [...]}' });
      return;
    }
    try {
      res.json(analyseFlow(flow, flowFile()));
    } catch (e) {
      // A flow the launcher cannot read at all must not take the editor down with it.
      RED.log.warn(`spawn sidebar: could not analyse the flow: ${(e as Error).stack ?? String(e)}`);
      res.status(500).json({ error: `could not analyse the flow: ${(e as Error).message}` });
    }
  });
}
