import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';

/**
 * Node-RED embedded in this process with spawn-red's nodes loaded: headless (no editor, no HTTP)
 * for a pipeline stage, or with the editor for `spawn-red editor`.
 */

/** The package root: where package.json with the "node-red" section lives. */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..');

export interface RuntimeOptions {
  /** The flow file to run. */
  flowFile: string;
  /** Node-RED's user directory; a temporary one when absent (removed on stop). */
  userDir?: string;
  /** Serve the editor on this port (loopback unless `host` says otherwise); headless when absent. */
  editorPort?: number;
  host?: string;
  /** More directories of nodes to load (tests and benchmarks add their own helper nodes). */
  nodesDirs?: string[];
  /** Node-RED log level: fatal, error, warn, info, debug, trace. */
  logLevel?: string;
  /** Settings merged over the defaults. */
  settings?: Record<string, unknown>;
}

export interface Runtime {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  RED: any;
  server: http.Server;
  /** The editor's URL when it is served. */
  url?: string;
  stop(): Promise<void>;
}

export async function startRuntime(opts: RuntimeOptions): Promise<Runtime> {
  // Node-RED keeps module-level state: one runtime per process.
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const RED = require('node-red');
  const tempDir = opts.userDir ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-'));
  const userDir = opts.userDir ?? tempDir!;
  fs.mkdirSync(userDir, { recursive: true });
  const server = http.createServer();
  const editor = opts.editorPort !== undefined;
  const settings = {
    userDir,
    flowFile: path.resolve(opts.flowFile),
    nodesDir: [PACKAGE_ROOT, ...(opts.nodesDirs ?? [])],
    httpAdminRoot: editor ? '/' : false,
    httpNodeRoot: editor ? '/api' : false,
    uiHost: opts.host ?? '127.0.0.1',
    editorTheme: { tours: false, projects: { enabled: false } },
    // No update checks: pipelines often run where there is no way out, and nothing should ask.
    telemetry: { enabled: false, updateNotification: false },
    logging: { console: { level: opts.logLevel ?? 'info', metrics: false, audit: false } },
    // spawn-red nodes keep no credentials; `false` stops Node-RED from generating a secret and
    // writing it into the user directory of every instance.
    credentialSecret: false,
    ...opts.settings,
  };
  RED.init(server, settings);
  if (editor) {
    // express comes with node-red; resolve it from there so a user's Node-RED install provides it.
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const express = require(require.resolve('express', { paths: [path.dirname(require.resolve('node-red'))] }));
    const app = express();
    app.use('/', RED.httpAdmin);
    app.use('/api', RED.httpNode);
    server.on('request', app);
  }
  await RED.start();
  let url: string | undefined;
  if (editor) {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.editorPort, settings.uiHost as string, () => resolve());
    });
    const addr = server.address();
    if (addr && typeof addr === 'object') url = `http://${settings.uiHost}:${addr.port}/`;
  }
  let stopped = false;
  return {
    RED,
    server,
    url,
    async stop() {
      if (stopped) return;
      stopped = true;
      await RED.stop();
      await new Promise<void>((r) => (editor ? server.close(() => r()) : r()));
      if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
    },
  };
}
