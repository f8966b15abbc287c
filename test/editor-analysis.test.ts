import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { analyseFlow } from '../launcher/editor-analysis';

/**
 * What the editor's spawn sidebar is sent for a flow (launcher/editor-analysis.ts, behind the admin
 * route): the same JSON and problems as the CLI, and for each problem the node (or tab) it is about,
 * so its link can reveal it.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'spawn-red.js');

type N = Record<string, unknown> & { id: string; type: string };
const tab = (id: string, label = id): N => ({ id, type: 'tab', label });
const stage = (z: string, more: Record<string, unknown> = {}): N => ({ id: `stage-${z}`, type: 'spawn-stage', z, ...more });
const node = (id: string, type: string, z: string, more: Record<string, unknown> = {}): N => ({ id, type: `spawn-${type}`, z, ...more });

describe('editor analysis (the spawn sidebar)', function () {
  it('gives the JSON `spawn-red export` prints for the same flow file, and its graph', function () {
    const file = path.join(ROOT, 'examples', 'work-queue.json');
    const cli = spawnSync(process.execPath, [CLI, 'export', file], { encoding: 'utf8' });
    assert.equal(cli.status, 0, cli.stderr);
    const a = analyseFlow(JSON.parse(fs.readFileSync(file, 'utf8')), file);
    assert.equal(a.json, cli.stdout);
    assert.equal(a.fileName, 'work-queue.json');
    assert.deepEqual(a.problems, []);
    assert.deepEqual(
      a.graph.stages.map((s) => [s.stage_id, s.instance_count]),
      [['workers', 1], ['clients', 2]],
    );
    assert.deepEqual(a.graph.edges, [{ from: 'workers', to: 'clients', protocol: 'zmq', pattern: 'router/dealer', port: 5557 }]);
  });

  it('offers exactly-once over QUIC and auto; a QUIC end in the other mode is named', function () {
    const flow = (transport: string, pullDelivery: string) => [
      tab('a', 'producer'),
      stage('a'),
      node('push1', 'push', 'a', { port: 6000, delivery: 'exactly-once', transport }),
      tab('b', 'consumer'),
      stage('b'),
      node('pull1', 'pull', 'b', { sourceStage: 'producer', delivery: pullDelivery, transport }),
    ];
    for (const transport of ['quic', 'auto']) assert.deepEqual(analyseFlow(flow(transport, 'exactly-once'), '/x/flows.json').problems, [], transport);
    const mismatch = analyseFlow(flow('quic', 'at-most-once'), '/x/flows.json').problems;
    assert.equal(mismatch.length, 1);
    assert.equal(mismatch[0].nodeId, 'pull1');
    assert.match(mismatch[0].text, /delivery: is at-most-once but reads from push .*which is exactly-once/);
  });

  it('names the node or tab of each problem, with the text the CLI prints', function () {
    const flow: N[] = [
      tab('a', 'producer'),
      stage('a'),
      node('push1', 'push', 'a', { port: 6000 }),
      node('push2', 'push', 'a', { port: 6000, name: 'second' }),
      { id: 'stage-a2', type: 'spawn-stage', z: 'a' },
      tab('b', 'consumer'),
      stage('b', { instanceCount: 0 }),
      node('pull1', 'pull', 'b', { sourceStage: 'nowhere' }),
      tab('c', 'loose'),
      node('pub1', 'pub', 'c', { port: 6001 }),
      { id: 'sf', type: 'subflow', name: 'helper' },
      node('sp', 'push', 'sf', { port: 7000 }),
    ];
    const a = analyseFlow(flow, '/some/where/flows.json');
    const where = Object.fromEntries(a.problems.map((p) => [p.text, [p.nodeId, p.tabId]]));
    assert.deepEqual(where, {
      'tab "loose": stage: has transport nodes (pub pub1) but no stage node: add a stage node to make the tab a stage': ['pub1', 'c'],
      'tab "producer", stage node stage-a2: stage: the tab already has a stage node (stage "producer", node stage-a); a tab declares one stage': ['stage-a2', 'a'],
      'tab "consumer", stage "consumer": instance count: must be a whole number of at least 1, got 0': ['stage-b', 'b'],
      'tab "producer", push "second" (node push2): port: port 6000 is also bound by push push1 on this tab': ['push2', 'a'],
      'tab "consumer", pull pull1: source stage: stage "nowhere" does not exist (stages: producer, consumer)': ['pull1', 'b'],
      'subflow "helper", push sp: transport nodes inside a subflow are not part of any stage: place the node on the stage\'s tab': ['sp', undefined],
    });
    // The pipeline is drawn even so.
    assert.deepEqual(a.pipeline.stages.map((s) => s.stage_id), ['producer', 'consumer']);
  });
});
