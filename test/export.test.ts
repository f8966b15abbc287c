import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { exportPipeline, pipelineJson, SpawnStage } from '../launcher/export';
import { formatProblem } from '../launcher/validate';

/** Flow → spawn pipeline JSON: the examples against their stored pipelines, and each export rule on a small flow. */

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'spawn-red.js');
const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
const readJson = (rel: string) => JSON.parse(fs.readFileSync(path.join(ROOT, rel), 'utf8'));

/** Every importable example, each with its exported pipeline stored in pipelines/. */
const EXAMPLES = fs.readdirSync(path.join(ROOT, 'examples')).filter((f) => f.endsWith('.json')).map((f) => f.replace(/\.json$/, ''));

type N = Record<string, unknown> & { id: string; type: string };
const tab = (id: string, label = id, more: Record<string, unknown> = {}): N => ({ id, type: 'tab', label, ...more });
const stage = (z: string, more: Record<string, unknown> = {}): N => ({ id: `stage-${z}`, type: 'spawn-stage', z, ...more });
const node = (id: string, type: string, z: string, more: Record<string, unknown> = {}): N => ({ id, type: `spawn-${type}`, z, ...more });
const stageOf = (stages: SpawnStage[], id: string) => stages.find((s) => s.stage_id === id)!;

describe('spawn-red export', function () {
  describe('the examples', function () {
    for (const name of EXAMPLES) {
      it(`examples/${name}.json exports to pipelines/${name}.json`, function () {
        const { pipeline, problems } = exportPipeline(readJson(`examples/${name}.json`), { fileName: `examples/${name}.json` });
        assert.deepEqual(problems.map(formatProblem), []);
        assert.deepEqual(pipeline, readJson(`pipelines/${name}.json`));
        // Byte for byte, so key order and formatting are what a user sees.
        assert.equal(pipelineJson(pipeline), fs.readFileSync(path.join(ROOT, 'pipelines', `${name}.json`), 'utf8'));
      });
    }

    it('streaming-example has the guide\'s stage shapes, with the headless runtime as command', function () {
      const { pipeline } = exportPipeline(readJson('examples/streaming-example.json'), { fileName: 'streaming-example.json' });
      const guide = [
        {
          stage_id: 'producer',
          instance_type: 'c5.xlarge',
          instance_count: 1,
          command: 'spawn-red run --flow flows.json --stage producer',
          data_output: { mode: 'stream', protocol: 'zmq', pattern: 'push', port: 5555 },
        },
        {
          stage_id: 'consumer',
          instance_type: 'c5.xlarge',
          instance_count: 1,
          command: 'spawn-red run --flow flows.json --stage consumer',
          depends_on: ['producer'],
          data_input: { mode: 'stream', source_stage: 'producer', protocol: 'zmq', pattern: 'pull' },
        },
      ];
      assert.deepEqual(pipeline, { pipeline_id: 'streaming-example', pipeline_name: 'streaming-example', s3_bucket: 'spawn-red-streaming-example', on_failure: 'stop', stages: guide });
    });
  });

  it('takes the pipeline id, name and bucket from the options, else from the file name', function () {
    const flow = readJson('examples/streaming-example.json');
    const a = exportPipeline(flow, { fileName: '/tmp/My Flows.v2.json' }).pipeline;
    assert.deepEqual([a.pipeline_id, a.pipeline_name, a.s3_bucket, a.on_failure], ['my-flows-v2', 'my-flows-v2', 'spawn-red-my-flows-v2', 'stop']);
    const b = exportPipeline(flow, { fileName: 'x.json', pipelineId: 'etl', name: 'Nightly ETL', s3Bucket: 'my-bucket' }).pipeline;
    assert.deepEqual([b.pipeline_id, b.pipeline_name, b.s3_bucket], ['etl', 'Nightly ETL', 'my-bucket']);
  });

  it('writes the stage fields in the documented order, only when meaningful, extra last', function () {
    const flow = [
      tab('a'),
      stage('a', {
        stageId: 'ingest',
        instanceType: 'c5n.9xlarge',
        instanceCount: '3',
        region: 'us-west-2',
        ami: 'ami-123',
        spot: true,
        timeout: '1h30m',
        placementGroup: 'pg-1',
        efa: true,
        env: [{ name: 'LEVEL', value: 'debug' }],
        extra: '{"max_retries": 2}',
      }),
      node('push', 'push', 'a', { port: 6000 }),
      tab('b'),
      stage('b', { extra: { note: 'x' }, spot: false, region: '' }),
      node('pull', 'pull', 'b', { sourceStage: 'ingest' }),
    ];
    const { pipeline, problems } = exportPipeline(flow, { fileName: 'f.json' });
    assert.deepEqual(problems, []);
    const ingest = stageOf(pipeline.stages, 'ingest');
    assert.deepEqual(Object.keys(ingest), ['stage_id', 'instance_type', 'instance_count', 'region', 'ami', 'spot', 'timeout', 'command', 'data_output', 'env', 'placement_group', 'efa_enabled', 'max_retries']);
    assert.equal(ingest.instance_count, 3);
    assert.deepEqual(ingest.env, { LEVEL: 'debug' });
    const b = stageOf(pipeline.stages, 'b');
    assert.deepEqual(Object.keys(b), ['stage_id', 'instance_type', 'instance_count', 'command', 'depends_on', 'data_input', 'note']);
    assert.equal(b.instance_type, 'c5.xlarge', 'the stage node\'s default');
  });

  it('orders stages dependencies first, ties in tab order', function () {
    const flow = [
      tab('sink'),
      tab('left'),
      tab('right'),
      tab('src'),
      stage('sink'),
      node('pull1', 'pull', 'sink', { sourceStage: 'right' }),
      node('pull2', 'pull', 'sink', { sourceStage: 'left', connection: '' }),
      stage('right'),
      node('pullR', 'pull', 'right', { sourceStage: 'src' }),
      node('pushR', 'push', 'right', { port: 5001 }),
      stage('left'),
      node('pullL', 'pull', 'left', { sourceStage: 'src' }),
      node('pushL', 'push', 'left', { port: 5002 }),
      stage('src'),
      node('pushS', 'push', 'src', { port: 5003 }),
    ];
    const { pipeline, problems } = exportPipeline(flow, {});
    assert.deepEqual(problems.map(formatProblem), []);
    assert.deepEqual(
      pipeline.stages.map((s) => s.stage_id),
      ['src', 'left', 'right', 'sink'],
    );
    assert.deepEqual(stageOf(pipeline.stages, 'sink').depends_on, ['right', 'left'], 'in order of first appearance');
    assert.deepEqual(stageOf(pipeline.stages, 'sink').data_input, { mode: 'stream', source_stage: 'right', source_stages: ['right', 'left'], protocol: 'zmq', pattern: 'pull' });
  });

  it('lists every output in data_outputs and every input pattern in data_inputs', function () {
    const flow = [
      tab('hub'),
      stage('hub'),
      node('push', 'push', 'hub', { port: 5001 }),
      node('pub', 'pub', 'hub', { port: 5002 }),
      node('router', 'router', 'hub', { port: 5003 }),
      node('pullBack', 'pull', 'hub', { connection: 'bind', port: 5004 }), // binds, so no output and no input
      tab('mix'),
      stage('mix'),
      node('pull', 'pull', 'mix', { sourceStage: 'hub' }),
      node('sub', 'sub', 'mix', { sourceStage: 'hub' }),
      node('dealer', 'dealer', 'mix', { sourceStage: 'hub' }),
      node('explicit', 'pull', 'mix', { endpoints: 'tcp://10.0.0.9:7000' }),
    ];
    const { pipeline, problems } = exportPipeline(flow, {});
    assert.deepEqual(problems.map(formatProblem), []);
    const hub = stageOf(pipeline.stages, 'hub');
    assert.deepEqual(hub.data_output, { mode: 'stream', protocol: 'zmq', pattern: 'push', port: 5001 });
    assert.deepEqual(hub.data_outputs, [
      { mode: 'stream', protocol: 'zmq', pattern: 'push', port: 5001 },
      { mode: 'stream', protocol: 'zmq', pattern: 'pub', port: 5002 },
      { mode: 'stream', protocol: 'zmq', pattern: 'router', port: 5003 },
    ]);
    assert.deepEqual(Object.keys(hub).slice(3), ['command', 'data_output', 'data_outputs']);
    const mix = stageOf(pipeline.stages, 'mix');
    assert.deepEqual(mix.depends_on, ['hub'], 'explicit endpoints add no dependency');
    assert.deepEqual(mix.data_input, { mode: 'stream', source_stage: 'hub', protocol: 'zmq', pattern: 'pull' });
    assert.deepEqual(mix.data_inputs, [
      { mode: 'stream', source_stage: 'hub', protocol: 'zmq', pattern: 'pull' },
      { mode: 'stream', source_stage: 'hub', protocol: 'zmq', pattern: 'sub' },
      { mode: 'stream', source_stage: 'hub', protocol: 'zmq', pattern: 'dealer' },
    ]);
    assert.deepEqual(Object.keys(mix).slice(3), ['command', 'depends_on', 'data_input', 'data_inputs']);
  });

  it('ignores disabled nodes and disabled tabs', function () {
    const flow = [
      tab('p'),
      stage('p'),
      node('push', 'push', 'p', { port: 5001 }),
      node('pubOff', 'pub', 'p', { port: 5002, d: true }),
      tab('c'),
      stage('c'),
      node('pull', 'pull', 'c', { sourceStage: 'p' }),
      node('subOff', 'sub', 'c', { sourceStage: 'nowhere', d: true }),
      tab('off', 'off', { disabled: true }),
      stage('off'),
      node('pullOff', 'pull', 'off', { sourceStage: 'p' }),
      tab('x'),
      { ...stage('x'), d: true },
    ];
    const { pipeline, problems } = exportPipeline(flow, {});
    assert.deepEqual(problems.map(formatProblem), []);
    assert.deepEqual(
      pipeline.stages.map((s) => s.stage_id),
      ['p', 'c'],
    );
    assert.equal(stageOf(pipeline.stages, 'p').data_outputs, undefined);
  });

  it('maps rdma out / efa in to protocol rdma, EFA and a cluster placement group', function () {
    const flow = [
      tab('simulation'),
      stage('simulation', { instanceType: 'c5n.18xlarge', instanceCount: 4 }),
      { id: 'gen', type: 'function', z: 'simulation', wires: [['rout']] },
      node('rout', 'rdma-out', 'simulation', { port: 7500 }),
      tab('analysis'),
      stage('analysis', { instanceType: 'c5n.9xlarge', instanceCount: 2 }),
      node('ein', 'efa-in', 'analysis', { sourceStage: 'simulation', wires: [[]] }),
    ];
    const { pipeline, problems } = exportPipeline(flow, { fileName: 'hpc-rdma.json' });
    assert.deepEqual(problems.map(formatProblem), []);
    // The guide's hpc-rdma stages, but for the commands (these stages are Node-RED tabs).
    const guide = readJson('pipelines/hpc-rdma.json').stages as SpawnStage[];
    const withoutCommand = (s: SpawnStage) => Object.fromEntries(Object.entries(s).filter(([k]) => k !== 'command'));
    assert.deepEqual(pipeline.stages.map(withoutCommand), guide.map(withoutCommand));
    assert.equal(pipeline.stages[0].command, 'spawn-red run --flow flows.json --stage simulation');
    // A placement group the stage names wins over "auto".
    flow[1] = stage('simulation', { instanceType: 'c5n.18xlarge', instanceCount: 4, placementGroup: 'hpc-pg' });
    assert.equal(exportPipeline(flow, {}).pipeline.stages[0].placement_group, 'hpc-pg');
  });

  it('exports an external program\'s command and declared endpoints', function () {
    const flow = [
      tab('ingest'),
      stage('ingest'),
      node('push', 'push', 'ingest', { port: 5555, format: 'raw' }),
      tab('model'),
      stage('model', { command: 'python score.py --fast', outPattern: 'push', outPort: 6000, inPattern: 'pull', inSources: 'ingest' }),
      { id: 'note', type: 'comment', z: 'model', name: 'runs score.py' },
      tab('sink'),
      stage('sink'),
      node('pull', 'pull', 'sink', { sourceStage: 'model', format: 'raw' }),
    ];
    const { pipeline, problems } = exportPipeline(flow, { flowPath: 'my flows.json' });
    assert.deepEqual(problems.map(formatProblem), []);
    assert.deepEqual(stageOf(pipeline.stages, 'model'), {
      stage_id: 'model',
      instance_type: 'c5.xlarge',
      instance_count: 1,
      command: 'python score.py --fast',
      depends_on: ['ingest'],
      data_input: { mode: 'stream', source_stage: 'ingest', protocol: 'zmq', pattern: 'pull' },
      data_output: { mode: 'stream', protocol: 'zmq', pattern: 'push', port: 6000 },
    });
    assert.equal(stageOf(pipeline.stages, 'sink').command, "spawn-red run --flow 'my flows.json' --stage sink");
  });

  it('keeps the computed fields when extra names one, and reports it', function () {
    const flow = [tab('a'), stage('a', { extra: '{"command": "rm -rf /", "instance_count": 9, "owner": "ops"}' })];
    const { pipeline, problems } = exportPipeline(flow, {});
    assert.equal(pipeline.stages[0].command, 'spawn-red run --flow flows.json --stage a');
    assert.equal(pipeline.stages[0].instance_count, 1);
    assert.equal(pipeline.stages[0].owner, 'ops');
    assert.deepEqual(problems.map(formatProblem), [
      'tab "a", stage "a": extra: extra field "command" overrides a computed field',
      'tab "a", stage "a": extra: extra field "instance_count" overrides a computed field',
    ]);
  });

  it('reports spawn\'s own rules on the result when the options break them (the name defaults to the empty id)', function () {
    const { problems } = exportPipeline(readJson('examples/streaming-example.json'), { pipelineId: '', s3Bucket: '' });
    assert.deepEqual(problems.map(formatProblem), [
      'pipeline: pipeline_id: is required',
      'pipeline: pipeline_name: is required',
      'pipeline: s3_bucket: is required',
    ]);
  });

  describe('through the CLI', function () {
    let dir: string;
    before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-export-'))));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('prints the pipeline on stdout', function () {
      const r = run('export', path.join(ROOT, 'examples', 'streaming-example.json'));
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, fs.readFileSync(path.join(ROOT, 'pipelines', 'streaming-example.json'), 'utf8'));
    });

    it('-o writes the file, with the options applied', function () {
      const out = path.join(dir, 'pipeline.json');
      const r = run('export', path.join(ROOT, 'examples', 'fan-out.json'), '-o', out, '--pipeline-id', 'alerts-prod', '--name', 'Alerts (prod)', '--s3-bucket=acme-pipelines');
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /wrote .*pipeline\.json: pipeline alerts-prod, 4 stages, 3 edges/);
      const text = fs.readFileSync(out, 'utf8');
      assert.ok(text.endsWith('}\n') && text.includes('\n  "pipeline_id": "alerts-prod",\n'), 'two-space indentation and a final new line');
      const p = JSON.parse(text);
      assert.deepEqual([p.pipeline_id, p.pipeline_name, p.s3_bucket], ['alerts-prod', 'Alerts (prod)', 'acme-pipelines']);
      assert.deepEqual(p.stages, readJson('pipelines/fan-out.json').stages);
    });

    it('exits 1 with the problems, one per line, and writes nothing, for a bad flow', function () {
      const flowFile = path.join(dir, 'bad.json');
      fs.writeFileSync(
        flowFile,
        JSON.stringify([tab('t1', 'consumer'), stage('t1'), node('p1', 'pull', 't1', { name: 'from producer', sourceStage: 'prodcer' }), node('p2', 'sub', 't1', {})]),
      );
      const out = path.join(dir, 'never.json');
      const r = run('export', flowFile, '-o', out);
      assert.equal(r.status, 1);
      assert.equal(r.stdout, '');
      assert.deepEqual(r.stderr.trimEnd().split('\n'), [
        'tab "consumer", pull "from producer" (node p1): source stage: stage "prodcer" does not exist (stages: consumer)',
        'tab "consumer", sub p2: source stage: names neither a source stage nor endpoints: pick the stage this sub reads from',
      ]);
      assert.equal(fs.existsSync(out), false);
    });

    it('exits 2 on bad usage', function () {
      for (const args of [['export'], ['export', 'a.json', 'b.json'], ['export', 'a.json', '--frobnicate']]) {
        const r = run(...args);
        assert.equal(r.status, 2, args.join(' '));
        assert.match(r.stderr, /Usage: spawn-red export <flows\.json>/);
      }
    });
  });
});
