import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { topoOrder } from '../launcher/dag';
import { edgeLine, pipelineGraph } from '../launcher/graph';

/** graph: the stage DAG of a flow or a pipeline, as text and as JSON. */

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'spawn-red.js');
const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
const readJson = (rel: string) => JSON.parse(fs.readFileSync(path.join(ROOT, rel), 'utf8'));

describe('spawn-red graph', function () {
  it('draws an example flow as text: stages in dependency order, one line per stream', function () {
    const r = run('graph', path.join(ROOT, 'examples', 'work-queue.json'));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'work-queue: 2 stages, 1 edge',
        '',
        'stages (dependencies first):',
        '  workers  (1 × c5.xlarge)  spawn-red run --flow flows.json --stage workers',
        '  clients  (2 × c5.xlarge)  spawn-red run --flow flows.json --stage clients',
        '',
        'edges:',
        '  workers ──zmq router→dealer :5557──▶ clients',
        '',
      ].join('\n'),
    );
  });

  it('--json gives the stages and edges', function () {
    const r = run('graph', path.join(ROOT, 'examples', 'fan-out.json'), '--json');
    assert.equal(r.status, 0, r.stderr);
    const cmd = (s: string) => `spawn-red run --flow flows.json --stage ${s}`;
    assert.deepEqual(JSON.parse(r.stdout), {
      stages: ['source', 'alerts', 'archive', 'metrics'].map((s) => ({ stage_id: s, instance_count: 1, instance_type: 'c5.xlarge', command: cmd(s) })),
      edges: ['alerts', 'archive', 'metrics'].map((to) => ({ from: 'source', to, protocol: 'zmq', pattern: 'pub/sub', port: 5556 })),
    });
  });

  it('a flow and the pipeline it exports to draw the same graph', function () {
    for (const name of ['streaming-example', 'fan-out', 'work-queue']) {
      const a = run('graph', path.join(ROOT, 'examples', `${name}.json`), '--json');
      const b = run('graph', path.join(ROOT, 'pipelines', `${name}.json`), '--json');
      assert.equal(a.status, 0, a.stderr);
      assert.equal(a.stdout, b.stdout, name);
    }
  });

  it('reads RDMA streams without a pattern (the guide\'s hpc-rdma)', function () {
    const g = pipelineGraph(readJson('pipelines/hpc-rdma.json'));
    assert.deepEqual(g.edges, [{ from: 'simulation', to: 'analysis', protocol: 'rdma', pattern: null, port: 7500 }]);
    assert.equal(edgeLine(g.edges[0]), 'simulation ──rdma :7500──▶ analysis');
  });

  it('takes edges from source_stages and data_inputs, with the port of the matching data_outputs entry', function () {
    const stage = (id: string, more: Record<string, unknown> = {}) => ({ stage_id: id, instance_type: 't', instance_count: 1, command: 'c', ...more });
    const g = pipelineGraph({
      stages: [
        stage('sink', {
          depends_on: ['a', 'b'],
          data_input: { mode: 'stream', source_stage: 'a', source_stages: ['a', 'b'], protocol: 'zmq', pattern: 'pull' },
          data_inputs: [
            { mode: 'stream', source_stage: 'a', source_stages: ['a', 'b'], protocol: 'zmq', pattern: 'pull' },
            { mode: 'stream', source_stage: 'b', protocol: 'zmq', pattern: 'sub' },
          ],
        }),
        stage('a', { data_output: { mode: 'stream', protocol: 'zmq', pattern: 'push', port: 5001 } }),
        stage('b', {
          data_output: { mode: 'stream', protocol: 'zmq', pattern: 'push', port: 5002 },
          data_outputs: [
            { mode: 'stream', protocol: 'zmq', pattern: 'push', port: 5002 },
            { mode: 'stream', protocol: 'zmq', pattern: 'pub', port: 5003 },
          ],
        }),
        stage('s3only', { depends_on: ['a'], data_input: { mode: 's3', source_stage: 'a' } }),
      ],
    });
    assert.deepEqual(
      g.stages.map((s) => s.stage_id),
      ['a', 'b', 'sink', 's3only'],
    );
    assert.deepEqual(g.edges.map(edgeLine), ['a ──zmq push→pull :5001──▶ sink', 'b ──zmq push→pull :5002──▶ sink', 'b ──zmq pub→sub :5003──▶ sink']);
  });

  it('draws what it can of a flow with problems, which go to stderr (exit 1)', function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-graph-'));
    try {
      const file = path.join(dir, 'flows.json');
      fs.writeFileSync(
        file,
        JSON.stringify([
          { id: 'a', type: 'tab', label: 'a' },
          { id: 'sa', type: 'spawn-stage', z: 'a', instanceCount: 0 },
          { id: 'pa', type: 'spawn-push', z: 'a', port: 5001 },
          { id: 'b', type: 'tab', label: 'b' },
          { id: 'sb', type: 'spawn-stage', z: 'b' },
          { id: 'lb', type: 'spawn-pull', z: 'b', sourceStage: 'a' },
        ]),
      );
      const r = run('graph', file);
      assert.equal(r.status, 1);
      assert.match(r.stdout, /\n {2}a ──zmq push→pull :5001──▶ b\n/);
      assert.equal(r.stderr, 'tab "a", stage "a": instance count: must be a whole number of at least 1, got 0\n');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('orders by dependencies, ties in the order given, and finds a cycle', function () {
    const deps: Record<string, string[]> = { d: ['b', 'c'], b: ['a'], c: ['a'], a: [] };
    assert.deepEqual(topoOrder(['d', 'c', 'b', 'a'], (id) => deps[id]), { order: ['a', 'c', 'b', 'd'] });
    const cyc: Record<string, string[]> = { x: [], p: ['r'], q: ['p'], r: ['q'], s: ['p'] };
    assert.deepEqual(topoOrder(['x', 'q', 'p', 'r', 's'], (id) => cyc[id]), { order: ['x', 'q', 'p', 'r', 's'], cycle: ['q', 'r', 'p', 'q'] });
  });
});
