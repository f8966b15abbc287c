import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TEST_NODES_DIR } from './support/child-runtime';

/**
 * `spawn-red launch` with the local provider, as a user runs it: real CLI processes, a detached
 * supervisor, one Node-RED process per stage instance on its own loopback address.
 */

const CLI = path.resolve(__dirname, '..', '..', 'bin', 'spawn-red.js');
const N = 20_000;

interface InstanceJson {
  stage_id: string;
  index: number;
  address: string;
  pid: number;
  alive: boolean;
  status: string;
  signal?: string | null;
  messages?: { received: number; sent: number };
}
interface StatusJson {
  status: string;
  reason?: string;
  supervisor: { pid: number; alive: boolean };
  instances: InstanceJson[];
}

let home: string;
function cli(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, SPAWN_RED_HOME: home, SPAWN_RED_NODES_DIRS: TEST_NODES_DIR },
  });
}
function status(id: string): StatusJson {
  const r = cli('status', id, '--json');
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as StatusJson;
}
/** Whether a process still runs. A zombie does not: it has exited, and only waits for its parent
 * to collect it (in a container whose init does not reap, orphans stay zombies). */
const pidAlive = (pid: number) => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
};
async function waitFor<T>(what: string, get: () => T | undefined, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function stageNode(tab: string, id: string, extra: Record<string, unknown> = {}) {
  return { id: `st-${tab}`, type: 'spawn-stage', z: tab, stageId: id, instanceType: 'c5.xlarge', instanceCount: 1, wires: [], ...extra };
}

/** producer → processor ×2 → consumer; the consumer's sink writes its report to `report`. */
function threeStageFlow(report: string, startFile = ''): object[] {
  return [
    { id: 'tP', type: 'tab', label: 'producer' },
    { id: 'tW', type: 'tab', label: 'processor' },
    { id: 'tC', type: 'tab', label: 'consumer' },
    stageNode('tP', 'producer'),
    { id: 'src', type: 'seq-source', z: 'tP', count: N, size: 200, kind: 'buffer', window: 2000, startFile, wires: [['push1']] },
    { id: 'push1', type: 'spawn-push', z: 'tP', port: 7101, wires: [] },
    stageNode('tW', 'processor', { instanceCount: 2 }),
    { id: 'pull1', type: 'spawn-pull', z: 'tW', sourceStage: 'producer', wires: [['push2']] },
    { id: 'push2', type: 'spawn-push', z: 'tW', port: 7102, wires: [] },
    stageNode('tC', 'consumer'),
    { id: 'pull2', type: 'spawn-pull', z: 'tC', sourceStage: 'processor', wires: [['sink']] },
    { id: 'sink', type: 'seq-sink', z: 'tC', expect: N, label: 'consumer', ordering: 'any', reportFile: report, wires: [] },
  ];
}

describe('spawn-red launch: the local provider', function () {
  this.timeout(180_000);
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-red-launch-'));
    home = path.join(dir, 'home');
  });
  afterEach(() => {
    // Whatever a test leaves running is stopped; down is idempotent.
    for (const id of fs.existsSync(path.join(home, 'pipelines')) ? fs.readdirSync(path.join(home, 'pipelines')) : []) cli('down', id);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it(`producer → processor ×2 → consumer: ${N} messages arrive complete, each processor carries a share, down leaves no process`, async function () {
    const report = path.join(dir, 'consumer.json');
    const flowFile = path.join(dir, 'three-stage.json');
    const startFile = path.join(dir, 'start');
    fs.writeFileSync(flowFile, JSON.stringify(threeStageFlow(report, startFile)));
    const r = cli('launch', flowFile, '--detached');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /launching three-stage: 4 instances of 3 stages/);
    // Start the source once both processors are connected to the producer: each then gets a share.
    const producerStats = path.join(home, 'pipelines', 'three-stage', 'producer-0', 'stats.json');
    await waitFor('both processors connected', () => {
      try {
        return (JSON.parse(fs.readFileSync(producerStats, 'utf8')) as { nodes: Record<string, { peers: number }> }).nodes.push1?.peers === 2 ? true : undefined;
      } catch {
        return undefined;
      }
    });
    fs.writeFileSync(startFile, '');

    const running = status('three-stage');
    assert.equal(running.status, 'running');
    assert.equal(running.instances.length, 4);
    for (const i of running.instances) assert.ok(i.alive && i.status === 'running', `${i.stage_id}/${i.index} is running`);
    assert.equal(new Set(running.instances.map((i) => i.address)).size, 4, 'each instance has its own address');

    const done = await waitFor('the consumer to receive every message', () => {
      const rep = fs.existsSync(report) ? (JSON.parse(fs.readFileSync(report, 'utf8')) as { done: boolean; count: number; duplicates: number; seqSum: number }) : undefined;
      return rep?.done ? rep : undefined;
    });
    assert.equal(done.count, N);
    assert.equal(done.duplicates, 0);
    assert.equal(done.seqSum, (N * (N - 1)) / 2);

    // The processors' counters reach the status once a second.
    const shares = await waitFor('both processor shares in status', () => {
      const s = status('three-stage').instances.filter((i) => i.stage_id === 'processor').map((i) => i.messages?.received ?? 0);
      return s.length === 2 && s[0] + s[1] === N ? s : undefined;
    });
    assert.ok(shares[0] > 0 && shares[1] > 0, `each processor instance carries a share: ${shares}`);

    const pids = [status('three-stage').supervisor.pid, ...running.instances.map((i) => i.pid)];
    const down = cli('down', 'three-stage');
    assert.equal(down.status, 0, down.stderr);
    assert.deepEqual(pids.filter(pidAlive), [], 'no process of the pipeline is left');
    const after = status('three-stage');
    assert.equal(after.status, 'stopped');
    assert.ok(after.instances.every((i) => i.status === 'stopped'));
    assert.ok(fs.existsSync(path.join(home, 'pipelines', 'three-stage', 'consumer-0', 'instance.log')), 'logs stay');
    const logs = cli('logs', 'three-stage', '--stage', 'consumer');
    assert.match(logs.stdout, /^consumer\/0 \| /m);
    assert.doesNotMatch(logs.stdout, /^producer\//m);
  });

  it('the guide\'s streaming example pipeline (a pipeline file, with its flow) streams end to end', async function () {
    const report = path.join(dir, 'consumer.json');
    const flow = [
      { id: 'tP', type: 'tab', label: 'producer' },
      { id: 'tC', type: 'tab', label: 'consumer' },
      stageNode('tP', 'producer'),
      { id: 'src', type: 'seq-source', z: 'tP', count: 5000, size: 100, kind: 'buffer', startDelay: 500, wires: [['push']] },
      { id: 'push', type: 'spawn-push', z: 'tP', port: 5555, wires: [] },
      stageNode('tC', 'consumer'),
      { id: 'pull', type: 'spawn-pull', z: 'tC', sourceStage: 'producer', wires: [['sink']] },
      { id: 'sink', type: 'seq-sink', z: 'tC', expect: 5000, label: 'c', reportFile: report, wires: [] },
    ];
    const flowFile = path.join(dir, 'flows.json');
    fs.writeFileSync(flowFile, JSON.stringify(flow));
    const pipeline = path.resolve(__dirname, '..', '..', 'pipelines', 'streaming-example.json');
    const r = cli('launch', pipeline, '--flow', flowFile, '--detached');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const rep = await waitFor('5000 messages at the consumer', () => {
      const x = fs.existsSync(report) ? (JSON.parse(fs.readFileSync(report, 'utf8')) as { done: boolean; count: number; outOfOrder: number }) : undefined;
      return x?.done ? x : undefined;
    });
    assert.equal(rep.count, 5000);
    assert.equal(rep.outOfOrder, 0);
  });

  it('--netns: each instance in its own network namespace (root), streaming across the bridge', async function () {
    if (process.getuid?.() !== 0) {
      if (process.env.CI === 'true') throw new Error('the --netns test needs root under CI');
      console.log('      (skipped: --netns needs root)');
      this.skip();
    }
    const report = path.join(dir, 'ns.json');
    const flowFile = path.join(dir, 'ns.json.flow');
    fs.writeFileSync(flowFile, JSON.stringify(threeStageFlow(report)));
    const r = cli('launch', flowFile, '--detached', '--netns', '--pipeline-id', 'ns');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const s = status('ns');
    assert.ok(s.instances.every((i) => /^10\.\d+\.\d+\.\d+$/.test(i.address)), 'namespace addresses');
    const done = await waitFor('every message across the namespaces', () => {
      const rep = fs.existsSync(report) ? (JSON.parse(fs.readFileSync(report, 'utf8')) as { done: boolean; count: number; duplicates: number }) : undefined;
      return rep?.done ? rep : undefined;
    });
    assert.equal(done.count, N);
    assert.equal(done.duplicates, 0);
    const namespaces = () => spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    const block = s.instances[0].address.split('.')[1];
    assert.match(namespaces(), new RegExp(`sr${block}-2-2`));
    assert.equal(cli('down', 'ns').status, 0);
    assert.doesNotMatch(namespaces(), new RegExp(`sr${block}-`), 'down removes the namespaces');
  });

  for (const onFailure of ['stop', 'continue'] as const) {
    it(`an instance killed with SIGKILL: on_failure ${onFailure}`, async function () {
      const flowFile = path.join(dir, 'kill.json');
      fs.writeFileSync(flowFile, JSON.stringify(threeStageFlow(path.join(dir, 'unused.json'))));
      const r = cli('launch', flowFile, '--detached', '--on-failure', onFailure);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      const victim = status('kill').instances.find((i) => i.stage_id === 'processor' && i.index === 1)!;
      process.kill(victim.pid, 'SIGKILL');
      if (onFailure === 'stop') {
        const s = await waitFor('the pipeline to stop', () => {
          const x = status('kill');
          return x.status === 'failed' ? x : undefined;
        });
        assert.match(String(s.reason), /instance processor\/1 was killed by SIGKILL; on_failure is stop/);
        const dead = s.instances.find((i) => i.stage_id === 'processor' && i.index === 1)!;
        assert.equal(dead.status, 'failed');
        assert.equal(dead.signal, 'SIGKILL');
        assert.ok(s.instances.every((i) => !i.alive), 'every instance stopped');
        const text = cli('status', 'kill').stdout;
        assert.match(text, /processor\/1 last log lines/);
      } else {
        const s = await waitFor('the death to be recorded', () => {
          const x = status('kill');
          return x.instances.find((i) => i.stage_id === 'processor' && i.index === 1)!.status === 'failed' ? x : undefined;
        });
        assert.equal(s.status, 'running');
        assert.match(String(s.reason), /processor\/1 was killed by SIGKILL; on_failure is continue/);
        assert.deepEqual(
          s.instances.filter((i) => i.alive).map((i) => `${i.stage_id}/${i.index}`),
          ['producer/0', 'processor/0', 'consumer/0'],
        );
      }
    });
  }

  it('refuses a second launch of a running pipeline id', function () {
    const flowFile = path.join(dir, 'twice.json');
    fs.writeFileSync(flowFile, JSON.stringify(threeStageFlow(path.join(dir, 'r.json'))));
    assert.equal(cli('launch', flowFile, '--detached').status, 0);
    const second = cli('launch', flowFile, '--detached');
    assert.equal(second.status, 1);
    assert.match(second.stderr, /pipeline "twice" is already running \(supervisor pid \d+.*\); stop it with: spawn-red down twice/);
  });

  it('enforces a stage timeout, and down cleans up after a supervisor that was killed', async function () {
    const flowFile = path.join(dir, 'slow.json');
    fs.writeFileSync(
      flowFile,
      JSON.stringify([
        { id: 'tA', type: 'tab', label: 'sleeper' },
        stageNode('tA', 'sleeper', { command: 'sleep 60', timeout: '1s' }),
        { id: 'tB', type: 'tab', label: 'other' },
        stageNode('tB', 'other', { command: 'sleep 60' }),
      ]),
    );
    assert.equal(cli('launch', flowFile, '--detached', '--on-failure', 'continue').status, 0);
    const timedOut = await waitFor('the timeout', () => {
      const s = status('slow');
      return s.instances[0].status === 'timed-out' ? s : undefined;
    });
    assert.equal(timedOut.instances[1].status, 'running');
    // The supervisor dies (say, the machine's OOM killer): the state goes stale, down still cleans up.
    process.kill(timedOut.supervisor.pid, 'SIGKILL');
    await waitFor('stale state', () => (status('slow').status === 'stale' ? true : undefined));
    const other = timedOut.instances[1].pid;
    const down = cli('down', 'slow');
    assert.equal(down.status, 0, down.stderr);
    assert.match(down.stdout, /stopping 1 instance left by a supervisor that is gone/);
    assert.equal(pidAlive(other), false);
    assert.equal(status('slow').status, 'stopped');
  });
});
