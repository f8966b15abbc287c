import { strict as assert } from 'assert';
import { ChildProcess, fork } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { freePort } from './support/ports';

/**
 * The admin route behind the spawn sidebar, POST <admin root>/spawn-red/pipeline, in a real
 * Node-RED with the editor served and admin authentication on: refused without a token, answered
 * for a user who may read flows, and a clear 400 for a body that is not a flow.
 */

const ROOT = path.resolve(__dirname, '..', '..');

// A child process, since Node-RED allows one runtime per process (the other tests' helper has one).
const CHILD = `
const bcrypt = require(require.resolve('bcryptjs', { paths: [require.resolve('node-red')] }));
const { startRuntime } = require(${JSON.stringify(path.join(ROOT, 'dist', 'launcher', 'runtime.js'))});
const [flowFile, userDir, port] = process.argv.slice(1);
startRuntime({ flowFile, userDir, editorPort: Number(port), logLevel: 'warn', settings: {
  adminAuth: { type: 'credentials', users: [{ username: 'viewer', password: bcrypt.hashSync('secret', 4), permissions: 'read' }] },
} }).then((rt) => process.send({ url: rt.url }), (e) => { console.error(e); process.exit(1); });
`;

describe('editor admin route (spawn sidebar)', function () {
  this.timeout(30_000);
  let dir: string;
  let child: ChildProcess;
  let url: string;

  before(async function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-route-'));
    fs.writeFileSync(path.join(dir, 'etl.json'), '[]');
    const port = await freePort();
    child = fork('-e', [CHILD, path.join(dir, 'etl.json'), path.join(dir, 'user'), String(port)], { execArgv: [], stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    url = await new Promise<string>((resolve, reject) => {
      child.once('message', (m: { url: string }) => resolve(m.url));
      child.once('exit', (code) => reject(new Error(`Node-RED exited with ${code}:\n${out}`)));
    });
  });

  after(async function () {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const post = (body: unknown, token?: string) =>
    fetch(`${url}spawn-red/pipeline`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });

  async function login(): Promise<string> {
    const r = await fetch(`${url}auth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: 'node-red-admin', grant_type: 'password', scope: 'read', username: 'viewer', password: 'secret' }),
    });
    assert.equal(r.status, 200, await r.clone().text());
    return ((await r.json()) as { access_token: string }).access_token;
  }

  const flow = [
    { id: 't1', type: 'tab', label: 'producer' },
    { id: 's1', type: 'spawn-stage', z: 't1' },
    { id: 'p1', type: 'spawn-push', z: 't1', port: 6100 },
    { id: 't2', type: 'tab', label: 'consumer' },
    { id: 's2', type: 'spawn-stage', z: 't2' },
    { id: 'q1', type: 'spawn-pull', z: 't2', sourceStage: 'producer' },
  ];

  it('refuses a request without a token, as Node-RED refuses GET /flows', async function () {
    const r = await post({ flow });
    assert.equal(r.status, 401);
  });

  it('answers a user who may read flows with the export, its problems and its graph', async function () {
    const token = await login();
    const r = await post({ flow }, token);
    assert.equal(r.status, 200);
    const a = (await r.json()) as { fileName: string; pipeline: { pipeline_id: string }; json: string; problems: unknown[]; graph: { edges: unknown[] } };
    // The pipeline id comes from the runtime's flow file name, as `spawn-red export etl.json` gives it.
    assert.equal(a.fileName, 'etl.json');
    assert.equal(a.pipeline.pipeline_id, 'etl');
    assert.deepEqual(JSON.parse(a.json), a.pipeline);
    assert.deepEqual(a.problems, []);
    assert.deepEqual(a.graph.edges, [{ from: 'producer', to: 'consumer', protocol: 'zmq', pattern: 'push/pull', port: 6100 }]);
  });

  it('says what it expects when the body is not a flow', async function () {
    const token = await login();
    const r = await post({ nodes: 3 }, token);
    assert.equal(r.status, 400);
    assert.match(((await r.json()) as { error: string }).error, /expected a Node-RED flow/);
  });
});
