import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as path from 'path';

/** The spawn-red command as a user runs it: a real child process. */

const CLI = path.resolve(__dirname, '..', '..', 'bin', 'spawn-red.js');
const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });

describe('spawn-red CLI', function () {
  it('--help lists the verbs and exits 0', function () {
    const r = run('--help');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Usage: spawn-red <verb>/);
    assert.match(r.stdout, /\n {2}run +run one stage of a flow headless/);
    assert.match(r.stdout, /\n {2}editor +open the Node-RED editor/);
  });

  it('each verb has its own --help', function () {
    for (const verb of ['run', 'editor']) {
      const r = run(verb, '--help');
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`Usage: spawn-red ${verb}`));
    }
  });

  it('an unknown verb exits 2 with the help', function () {
    const r = run('frobnicate');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown verb "frobnicate"/);
  });

  it('run names a missing flow file and exits 1', function () {
    const r = run('run', '/nonexistent/flows.json');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /flow file \/nonexistent\/flows\.json does not exist/);
  });
});
