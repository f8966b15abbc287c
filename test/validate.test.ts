import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseGoDuration } from '../launcher/go-duration';
import { firstErrorOffset, parseJson } from '../launcher/json-location';
import { formatProblem, validateFlow, validatePipeline } from '../launcher/validate';

/** validate: spawn's pipeline rules, this project's flow rules, and the messages that name where and which field. */

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'spawn-red.js');
const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
const readJson = (rel: string) => JSON.parse(fs.readFileSync(path.join(ROOT, rel), 'utf8'));

/** Every importable example: each must be a valid pipeline. */
const EXAMPLES = fs.readdirSync(path.join(ROOT, 'examples')).filter((f: string) => f.endsWith('.json')).map((f: string) => f.replace(/\.json$/, ''));
const PIPELINES = [...EXAMPLES, 'hpc-rdma'];

type N = Record<string, unknown> & { id: string; type: string };
const tab = (id: string, label = id, more: Record<string, unknown> = {}): N => ({ id, type: 'tab', label, ...more });
const stage = (z: string, more: Record<string, unknown> = {}): N => ({ id: `stage-${z}`, type: 'spawn-stage', z, ...more });
const node = (id: string, type: string, z: string, more: Record<string, unknown> = {}): N => ({ id, type: `spawn-${type}`, z, ...more });

/** The problems of a flow, as printed. */
const flowSays = (flow: N[]) => validateFlow(flow).map(formatProblem);
/** The problems of a pipeline, as printed. */
const pipelineSays = (p: unknown) => validatePipeline(p).map(formatProblem);

/** A valid two-stage flow to break one rule at a time. */
const producerConsumer = (): N[] => [
  tab('tP', 'producer'),
  stage('tP'),
  node('push1', 'push', 'tP', { port: 5555 }),
  tab('tC', 'consumer'),
  stage('tC'),
  node('p1', 'pull', 'tC', { name: 'from producer', sourceStage: 'producer' }),
];

/** A valid pipeline (the guide's streaming example) to break one rule at a time. */
const streaming = (): Record<string, any> => readJson('pipelines/streaming-example.json');

describe('spawn-red validate', function () {
  describe('accepts', function () {
    for (const name of EXAMPLES) {
      it(`examples/${name}.json`, function () {
        assert.deepEqual(flowSays(readJson(`examples/${name}.json`)), []);
      });
    }
    for (const name of PIPELINES) {
      it(`pipelines/${name}.json`, function () {
        assert.deepEqual(pipelineSays(readJson(`pipelines/${name}.json`)), []);
      });
    }
    it('the flow used to break the rules below', function () {
      assert.deepEqual(flowSays(producerConsumer()), []);
    });
  });

  describe('Go durations (stage timeouts)', function () {
    it('accepts what time.ParseDuration accepts', function () {
      const ns = (s: string) => {
        const d = parseGoDuration(s);
        assert.ok(d.ok, `${s}: ${!d.ok && d.reason}`);
        return d.ok ? Number(d.nanoseconds) : NaN;
      };
      assert.equal(ns('0'), 0);
      assert.equal(ns('-0'), 0);
      assert.equal(ns('1h'), 3600e9);
      assert.equal(ns('1h30m'), 5400e9);
      assert.equal(ns('+1.5h'), 5400e9);
      assert.equal(ns('-2m3.5s'), -123.5e9);
      assert.equal(ns('.5s'), 0.5e9);
      assert.equal(ns('1.s'), 1e9);
      assert.equal(ns('300ms'), 0.3e9);
      assert.equal(ns('2us'), 2000);
      assert.equal(ns('2µs'), 2000);
      assert.equal(ns('2μs'), 2000);
      assert.equal(ns('7ns'), 7);
      assert.equal(ns('1h1h'), 7200e9);
    });

    it('refuses the rest with Go\'s reason', function () {
      const reason = (s: string) => {
        const d = parseGoDuration(s);
        return d.ok ? 'ok' : d.reason;
      };
      assert.equal(reason(''), 'invalid duration ""');
      assert.equal(reason('1'), 'missing unit in duration "1"');
      assert.equal(reason('1 hour'), 'unknown unit " hour" in duration "1 hour"');
      assert.equal(reason('1d'), 'unknown unit "d" in duration "1d"');
      assert.equal(reason('h'), 'invalid duration "h"');
      assert.equal(reason('.s'), 'invalid duration ".s"');
      assert.equal(reason('-'), 'invalid duration "-"');
      assert.equal(reason('1H'), 'unknown unit "H" in duration "1H"');
      assert.equal(reason('3000000h'), 'invalid duration "3000000h"', 'over int64 nanoseconds');
    });
  });

  describe('flow rules', function () {
    it('a flow without any stage node', function () {
      assert.deepEqual(flowSays([tab('a'), { id: 'i', type: 'inject', z: 'a' }]), ['flow: stage: no tab has a stage node: add a stage node to each tab that is a pipeline stage']);
    });

    it('a tab with transport nodes but no stage node', function () {
      const flow = [...producerConsumer(), tab('tL', 'loose ends'), node('px', 'push', 'tL', { port: 6000 }), node('py', 'sub', 'tL', { name: 'news', endpoints: 'tcp://h:1' })];
      assert.deepEqual(flowSays(flow), ['tab "loose ends": stage: has transport nodes (push px, sub "news") but no stage node: add a stage node to make the tab a stage']);
    });

    it('two stage nodes on one tab', function () {
      const flow = [...producerConsumer(), { id: 'again', type: 'spawn-stage', z: 'tC', stageId: 'other' }];
      assert.deepEqual(flowSays(flow), ['tab "consumer", stage node again: stage: the tab already has a stage node (stage "consumer", node stage-tC); a tab declares one stage']);
    });

    it('duplicate stage ids', function () {
      const flow = producerConsumer();
      flow[4] = stage('tC', { stageId: 'producer' });
      assert.deepEqual(flowSays(flow), ['tab "consumer", stage "producer": stage id: stage "producer" is also declared on tab "producer"; stage ids must be unique']);
    });

    it('a stage id the launcher cannot use', function () {
      const flow = producerConsumer();
      flow[1] = stage('tP', { stageId: 'my producer' });
      flow[5].sourceStage = 'my producer';
      assert.deepEqual(flowSays(flow), ['tab "producer", stage "my producer": stage id: may hold only letters, digits, "-" and "_", and starts with a letter or digit']);
    });

    it('an input naming a stage that does not exist', function () {
      const flow = producerConsumer();
      flow[5].sourceStage = 'prodcer';
      assert.deepEqual(flowSays(flow), ['tab "consumer", pull "from producer" (node p1): source stage: stage "prodcer" does not exist (stages: producer, consumer)']);
    });

    it('an input naming a stage whose tab is disabled', function () {
      const flow = producerConsumer();
      flow[0] = tab('tP', 'producer', { disabled: true });
      assert.deepEqual(flowSays(flow), ['tab "consumer", pull "from producer" (node p1): source stage: stage "producer" is not in the pipeline: its tab "producer" is disabled']);
    });

    it('an input whose source stage has no matching output: pull needs push, sub needs pub, dealer needs router', function () {
      const flow = [
        tab('tP', 'producer'),
        stage('tP'),
        node('pub', 'pub', 'tP', { port: 5556 }),
        tab('tC', 'consumer'),
        stage('tC'),
        node('p1', 'pull', 'tC', { sourceStage: 'producer' }),
        node('s1', 'sub', 'tC', { sourceStage: 'producer' }),
        node('d1', 'dealer', 'tC', { sourceStage: 'producer' }),
        node('e1', 'efa-in', 'tC', { sourceStage: 'producer' }),
      ];
      assert.deepEqual(flowSays(flow), [
        'tab "consumer", pull p1: source stage: stage "producer" has no push output for this pull to read from',
        'tab "consumer", dealer d1: source stage: stage "producer" has no router output for this dealer to read from',
        'tab "consumer", efa in e1: source stage: stage "producer" has no rdma out for this efa in to read from',
      ]);
    });

    it('a source stage with two outputs of the pattern', function () {
      const flow = [...producerConsumer(), node('push2', 'push', 'tP', { port: 5560 })];
      assert.deepEqual(flowSays(flow), ['tab "consumer", pull "from producer" (node p1): source stage: stage "producer" has 2 push outputs (ports 5555, 5560); a source stage must have exactly one']);
    });

    it('two outputs binding the same port in one stage', function () {
      const flow = [...producerConsumer(), node('pub2', 'pub', 'tP', { name: 'events', port: '5555' })];
      assert.deepEqual(flowSays(flow), ['tab "producer", pub "events" (node pub2): port: port 5555 is also bound by push push1 on this tab']);
    });

    it('a port out of range', function () {
      const flow = producerConsumer();
      flow[2].port = 70000;
      assert.deepEqual(flowSays(flow), ['tab "producer", push push1: port: must be a whole number from 1 to 65535, got 70000']);
    });

    it('instance count < 1 on a stage node', function () {
      const flow = producerConsumer();
      flow[1] = stage('tP', { instanceCount: '0' });
      flow[4] = stage('tC', { instanceCount: 'two' });
      assert.deepEqual(flowSays(flow), [
        'tab "producer", stage "producer": instance count: must be a whole number of at least 1, got "0"',
        'tab "consumer", stage "consumer": instance count: must be a whole number of at least 1, got "two"',
      ]);
    });

    it('a bad timeout on a stage node', function () {
      const flow = producerConsumer();
      flow[1] = stage('tP', { timeout: '2 days' });
      assert.deepEqual(flowSays(flow), ['tab "producer", stage "producer": timeout: unknown unit " days" in duration "2 days": use a Go duration such as 30m, 1h or 1h30m']);
    });

    it('an external-program stage whose tab holds other nodes than the stage node and comments', function () {
      const flow = [
        ...producerConsumer(),
        tab('tE', 'scorer'),
        stage('tE', { command: './score' }),
        { id: 'c', type: 'comment', z: 'tE', name: 'the program scores' },
        { id: 'g', type: 'group', z: 'tE', nodes: [] },
        { id: 'dbg', type: 'debug', z: 'tE', name: 'oops' },
        node('pz', 'pull', 'tE', { sourceStage: 'nowhere' }),
      ];
      assert.deepEqual(flowSays(flow), ['tab "scorer", stage "scorer": command: an external program\'s tab holds only its stage node (and comments): move or delete debug "oops" (node dbg), pull pz']);
    });

    it('a Node-RED node reading from an external program without the raw format', function () {
      const flow = [
        tab('tX', 'producer'),
        stage('tX', { command: 'python producer.py', outPattern: 'push', outPort: 5555 }),
        tab('tC', 'consumer'),
        stage('tC'),
        node('p1', 'pull', 'tC', { name: 'from producer', sourceStage: 'producer', format: 'spawn' }),
      ];
      assert.deepEqual(flowSays(flow), ['tab "consumer", pull "from producer" (node p1): format: reads from external program "producer": set Format to raw']);
      flow[4].format = 'raw';
      assert.deepEqual(flowSays(flow), []);
    });

    it('an external program reading from a Node-RED node without the raw format', function () {
      const flow = [...producerConsumer(), tab('tX', 'archiver'), stage('tX', { command: './archive', inPattern: 'pull', inSources: 'producer' })];
      assert.deepEqual(flowSays(flow), ['tab "producer", push push1: format: is read by external program "archiver": set Format to raw']);
    });

    it('an external program\'s declared input naming an unknown stage, or none', function () {
      const flow = [...producerConsumer(), tab('tX', 'x'), stage('tX', { command: './x', inPattern: 'sub', inSources: 'producer, ghost' }), tab('tY', 'y'), stage('tY', { command: './y', inPattern: 'pull', inSources: ' ' })];
      assert.deepEqual(flowSays(flow), [
        'tab "x", stage "x": input sources: stage "producer" has no pub output for this sub to read from',
        'tab "x", stage "x": input sources: stage "ghost" does not exist (stages: producer, consumer, x, y)',
        'tab "y", stage "y": input sources: names no source stage: list the stages the program reads from',
      ]);
    });

    it('a stage node\'s extra overriding a computed field, or not a JSON object', function () {
      const flow = producerConsumer();
      flow[1] = stage('tP', { extra: '{"depends_on": ["x"], "data_output": {}, "owner": "ops"}' });
      flow[4] = stage('tC', { extra: '{"oops"' });
      const says = flowSays(flow);
      assert.deepEqual(says.slice(0, 2), [
        'tab "producer", stage "producer": extra: extra field "depends_on" overrides a computed field',
        'tab "producer", stage "producer": extra: extra field "data_output" overrides a computed field',
      ]);
      assert.match(says[2], /^tab "consumer", stage "consumer": extra: is not a JSON object \(.+\)$/);
      assert.equal(says.length, 3);
    });

    it('an input with neither source stage nor endpoints', function () {
      const flow = producerConsumer();
      flow[5] = node('p1', 'pull', 'tC', { name: 'from producer', sourceStage: '', endpoints: '' });
      assert.deepEqual(flowSays(flow), ['tab "consumer", pull "from producer" (node p1): source stage: names neither a source stage nor endpoints: pick the stage this pull reads from']);
      flow[5].endpoints = 'tcp://10.1.2.3:5555';
      assert.deepEqual(flowSays(flow), []);
    });

    it('stages reading from each other in a cycle', function () {
      const flow = [
        tab('a'),
        stage('a'),
        node('pa', 'push', 'a', { port: 5001 }),
        node('la', 'pull', 'a', { sourceStage: 'c' }),
        tab('b'),
        stage('b'),
        node('pb', 'push', 'b', { port: 5002 }),
        node('lb', 'pull', 'b', { sourceStage: 'a' }),
        tab('c'),
        stage('c'),
        node('pc', 'push', 'c', { port: 5003 }),
        node('lc', 'pull', 'c', { sourceStage: 'b' }),
      ];
      assert.deepEqual(flowSays(flow), ['tab "a", stage "a": source stage: stages read from each other in a cycle: a → b → c → a; spawn needs the stages to form a DAG']);
    });

    it('a stage reading from itself is no cycle', function () {
      const flow = [tab('a'), stage('a'), node('r', 'router', 'a', { port: 5001 }), node('d', 'dealer', 'a', { sourceStage: 'a' })];
      assert.deepEqual(flowSays(flow), []);
    });

    it('transport nodes inside a subflow', function () {
      const flow = [...producerConsumer(), { id: 'sf', type: 'subflow', name: 'helper' }, node('sp', 'push', 'sf', { port: 7000 })];
      assert.deepEqual(flowSays(flow), ['subflow "helper", push sp: transport nodes inside a subflow are not part of any stage: place the node on the stage\'s tab']);
    });

    it('items that are not nodes', function () {
      assert.deepEqual(flowSays([...producerConsumer(), 42 as never]), ['flow[6]: is not a Node-RED node (an object with "id" and "type")']);
    });
  });

  describe('pipeline rules (spawn\'s validator)', function () {
    it('pipeline_id, pipeline_name and s3_bucket are required', function () {
      const p = streaming();
      delete p.pipeline_id;
      p.pipeline_name = '';
      delete p.s3_bucket;
      assert.deepEqual(pipelineSays(p), ['pipeline: pipeline_id: is required', 'pipeline: pipeline_name: is required', 'pipeline: s3_bucket: is required']);
    });

    it('at least one stage', function () {
      assert.deepEqual(pipelineSays({ ...streaming(), stages: [] }), ['pipeline: stages: at least one stage is required']);
    });

    it('on_failure is "", stop or continue', function () {
      for (const ok of ['', 'stop', 'continue']) assert.deepEqual(pipelineSays({ ...streaming(), on_failure: ok }), []);
      assert.deepEqual(pipelineSays({ ...streaming(), on_failure: 'retry' }), ['pipeline: on_failure: must be "stop" or "continue", got "retry"']);
    });

    it('stage_id is required and unique', function () {
      const p = streaming();
      delete p.stages[0].stage_id;
      p.stages.push({ ...p.stages[1] });
      const says = pipelineSays(p);
      assert.deepEqual(says.slice(0, 2), ['stage "consumer": stage_id: "consumer" is used by stages #2 and #3; stage ids must be unique', 'stage #1: stage_id: is required']);
    });

    it('instance_type, instance_count >= 1 and command are required', function () {
      const p = streaming();
      delete p.stages[0].instance_type;
      p.stages[0].instance_count = 0;
      p.stages[1].command = '';
      delete p.stages[1].instance_count;
      assert.deepEqual(pipelineSays(p), [
        'stage "producer": instance_type: is required',
        'stage "producer": instance_count: must be a whole number >= 1, got 0',
        'stage "consumer": command: is required',
        'stage "consumer": instance_count: is required (a whole number >= 1)',
      ]);
    });

    it('depends_on names stages that exist', function () {
      const p = streaming();
      p.stages[1].depends_on = ['producer', 'prodcer'];
      assert.deepEqual(pipelineSays(p), ['stage "consumer": depends_on: stage "prodcer" does not exist']);
    });

    it('timeout parses as a Go duration', function () {
      const p = streaming();
      p.stages[0].timeout = '90 minutes';
      p.stages[1].timeout = '1h30m';
      assert.deepEqual(pipelineSays(p), ['stage "producer": timeout: unknown unit " minutes" in duration "90 minutes": use a Go duration such as 30m, 1h or 1h30m']);
    });

    it('data_input and data_output mode is s3 or stream', function () {
      const p = streaming();
      p.stages[0].data_output.mode = 'pipe';
      delete p.stages[1].data_input.mode;
      assert.deepEqual(pipelineSays(p), [
        'stage "producer": data_output.mode: must be "s3" or "stream", got "pipe"',
        'stage "consumer": data_input.mode: must be "s3" or "stream", got nothing',
      ]);
    });

    it('a stream input needs a protocol and a source_stage that exists', function () {
      const p = streaming();
      delete p.stages[1].data_input.protocol;
      p.stages[1].data_input.source_stage = 'prodcer';
      assert.deepEqual(pipelineSays(p), [
        'stage "consumer": data_input.protocol: is required in stream mode (tcp, grpc, zmq, quic, rdma)',
        'stage "consumer": data_input.source_stage: stage "prodcer" does not exist',
      ]);
      delete p.stages[1].data_input.source_stage;
      p.stages[1].data_input.protocol = 'zmq';
      assert.deepEqual(pipelineSays(p), ['stage "consumer": data_input.source_stage: is required in stream mode']);
    });

    it('a stream output needs a protocol and a port from 1 to 65535', function () {
      const p = streaming();
      p.stages[0].data_output.protocol = 'udp';
      p.stages[0].data_output.port = 0;
      assert.deepEqual(pipelineSays(p), [
        'stage "producer": data_output.protocol: must be one of tcp, grpc, zmq, quic, rdma, got "udp"',
        'stage "producer": data_output.port: must be 1-65535, got 0',
      ]);
      delete p.stages[0].data_output.port;
      p.stages[0].data_output.protocol = 'zmq';
      assert.deepEqual(pipelineSays(p), ['stage "producer": data_output.port: is required in stream mode (1-65535)']);
    });

    it('accepts the guide\'s quic and rdma protocols besides tcp, grpc and zmq', function () {
      for (const protocol of ['tcp', 'grpc', 'zmq', 'quic', 'rdma']) {
        const p = streaming();
        p.stages[0].data_output.protocol = protocol;
        p.stages[1].data_input.protocol = protocol;
        assert.deepEqual(pipelineSays(p), [], protocol);
      }
    });

    it('a stream pattern, when given, is a ZeroMQ pattern', function () {
      const p = streaming();
      p.stages[1].data_input.pattern = 'pipeline';
      assert.deepEqual(pipelineSays(p), ['stage "consumer": data_input.pattern: must be one of push, pull, pub, sub, router, dealer, got "pipeline"']);
    });

    it('s3 mode: an input needs a source, an output needs paths', function () {
      const p = streaming();
      p.stages[0].data_output = { mode: 's3' };
      p.stages[1].data_input = { mode: 's3', source_stages: ['producer', 'gone'] };
      assert.deepEqual(pipelineSays(p), [
        'stage "producer": data_output.paths: s3 mode requires at least one path',
        'stage "consumer": data_input.source_stages: stage "gone" does not exist',
      ]);
    });

    it('data_inputs and data_outputs entries follow the same rules', function () {
      const p = streaming();
      p.stages[0].data_outputs = [p.stages[0].data_output, { mode: 'stream', protocol: 'zmq', pattern: 'pub', port: 99999 }];
      p.stages[1].data_inputs = [p.stages[1].data_input, { mode: 'stream', protocol: 'zmq', pattern: 'sub', source_stage: 'x' }];
      assert.deepEqual(pipelineSays(p), [
        'stage "producer": data_outputs[1].port: must be 1-65535, got 99999',
        'stage "consumer": data_inputs[1].source_stage: stage "x" does not exist',
      ]);
    });

    it('the stages form a DAG: a cycle is reported with its path', function () {
      const p = streaming();
      p.stages[0].depends_on = ['consumer'];
      assert.deepEqual(pipelineSays(p), ['pipeline: depends_on: stages depend on each other in a cycle: producer → consumer → producer']);
      p.stages[0].depends_on = ['producer'];
      delete p.stages[1].depends_on;
      assert.deepEqual(pipelineSays(p), ['pipeline: depends_on: stages depend on each other in a cycle: producer → producer']);
    });

    it('fields of the wrong JSON type', function () {
      const p = streaming();
      p.stages[0].instance_count = '1';
      p.stages[0].spot = 'yes';
      p.stages[1].env = { A: 1 };
      assert.deepEqual(pipelineSays(p), [
        'stage "producer": instance_count: must be a whole number >= 1, got "1"',
        'stage "producer": spot: must be true or false, got "yes"',
        'stage "consumer": env.A: must be a string, got 1',
      ]);
    });
  });

  describe('malformed JSON', function () {
    it('gives the line and column of the error, with or without a position in Node\'s message', function () {
      const cases: Array<[string, number, number, RegExp]> = [
        ['[\n  {"id": "a",\n   "type": "tab",}\n]', 3, 18, /property name/],
        ['[\n  {"id": "a", "type": tab}\n]', 2, 24, /^Unexpected token 'a'$/],
        ['[1,\n 2,\n ]', 3, 2, /^Unexpected token '\]'$/],
        ['[\n  {"id": "a"', 2, 13, /^Expected ',' or '}' after property value$/],
        ['[\n  {"id": "a", "type": "t', 2, 25, /^Unterminated string$/],
        ['', 1, 1, /end of JSON input/],
      ];
      for (const [text, line, column, reason] of cases) {
        const r = parseJson(text);
        assert.ok(!r.ok);
        if (r.ok) continue;
        assert.deepEqual([r.line, r.column], [line, column], JSON.stringify(text));
        assert.match(r.reason, reason);
        assert.doesNotMatch(r.reason, /position|is not valid JSON/);
      }
    });

    it('its scanner finds the offset JSON.parse stops at', function () {
      for (const text of ['{"a":}', '[1 2]', '{"a" 1}', '"abc', '"\\q"', '[01]', '[-]', '[1.]', '[1e]', 'nul', '[1] 2', '{"a":1,}', '"\\u12G4"', '"a\u0001"', 'tru', '[1,]']) {
        assert.notEqual(firstErrorOffset(text), -1, text);
      }
      for (const text of ['{}', '[]', ' {"a": [1, -2.5e+3, true, false, null, "x\\n\\u00e9"]} ', '0', '"\\/"']) {
        assert.equal(firstErrorOffset(text), -1, text);
      }
    });

    it('through the CLI: "file: line L, column C: reason" and exit 1', function () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-validate-'));
      try {
        const file = path.join(dir, 'flows.json');
        fs.writeFileSync(file, '[\n  {"id": "a", "type": "tab"},\n  {"id": "b" "type": "inject"}\n]\n');
        const r = run('validate', file);
        assert.equal(r.status, 1);
        assert.equal(r.stdout, '');
        assert.equal(r.stderr, `${file}: line 3, column 14: Expected ',' or '}' after property value\n`);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('through the CLI', function () {
    it('prints "ok: N stages, M edges" for a flow and for a pipeline', function () {
      let r = run('validate', path.join(ROOT, 'examples', 'fan-out.json'));
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'ok: 4 stages, 3 edges\n');
      r = run('validate', path.join(ROOT, 'pipelines', 'hpc-rdma.json'));
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'ok: 2 stages, 1 edge\n');
    });

    it('prints the problems of a pipeline one per line and exits 1', function () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-validate-'));
      try {
        const file = path.join(dir, 'pipeline.json');
        const p = streaming();
        p.stages[1].data_input.source_stage = 'prodcer';
        p.stages[0].timeout = '1 h';
        fs.writeFileSync(file, JSON.stringify(p));
        const r = run('validate', file);
        assert.equal(r.status, 1);
        assert.deepEqual(r.stderr.trimEnd().split('\n'), [
          'stage "producer": timeout: unknown unit " h" in duration "1 h": use a Go duration such as 30m, 1h or 1h30m',
          'stage "consumer": data_input.source_stage: stage "prodcer" does not exist',
        ]);
        fs.writeFileSync(file, '{"name": "not a pipeline"}');
        const r2 = run('validate', file);
        assert.equal(r2.status, 1);
        assert.equal(r2.stderr, `${file}: is neither a Node-RED flow (an array of nodes) nor a spawn pipeline (an object with "stages")\n`);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('names a missing file (exit 1) and a missing argument (exit 2)', function () {
      const r = run('validate', '/nonexistent/flows.json');
      assert.equal(r.status, 1);
      assert.equal(r.stderr, '/nonexistent/flows.json: does not exist\n');
      const u = run('validate');
      assert.equal(u.status, 2);
      assert.match(u.stderr, /spawn-red validate: needs a file/);
    });
  });
});
