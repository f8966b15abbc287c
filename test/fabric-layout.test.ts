import assert from 'assert';
import { spawnSync } from 'child_process';
import fs from 'fs';
import os from 'os';
import path from 'path';
import { CONSTANTS, STRUCTS } from '../native/fabric/layout';
import { requireSystem } from './support/system';

/**
 * Every offset, size and constant in native/fabric/layout.ts, compared with what the C compiler
 * says for the installed headers. A wrong offset there is a SIGSEGV at run time, so it is caught
 * here instead.
 */

const INSTALL = 'apt-get install libfabric-dev (and a C compiler: apt-get install gcc)';
const HEADERS = ['rdma/fabric.h', 'rdma/fi_endpoint.h', 'rdma/fi_domain.h', 'rdma/fi_cm.h', 'rdma/fi_eq.h'];

/** C source printing "name value" lines for everything in the table. */
export function layoutProgram(): string {
  const lines = [...HEADERS.map((h) => `#include <${h}>`), '#include <stdio.h>', '#include <stddef.h>', 'int main(void) {'];
  for (const [struct, { fields }] of Object.entries(STRUCTS)) {
    lines.push(`  printf("${struct} %zu\\n", sizeof(struct ${struct}));`);
    for (const field of Object.keys(fields)) {
      lines.push(`  printf("${struct}.${field} %zu\\n", offsetof(struct ${struct}, ${field}));`);
    }
  }
  for (const name of Object.keys(CONSTANTS)) {
    lines.push(`  printf("${name} %llu\\n", (unsigned long long)(${name}));`);
  }
  lines.push('  return 0;', '}');
  return lines.join('\n') + '\n';
}

function tableValues(): Map<string, string> {
  const m = new Map<string, string>();
  for (const [struct, { size, fields }] of Object.entries(STRUCTS)) {
    m.set(struct, String(size));
    for (const [field, offset] of Object.entries(fields)) m.set(`${struct}.${field}`, String(offset));
  }
  for (const [name, value] of Object.entries(CONSTANTS)) m.set(name, BigInt.asUintN(64, BigInt(value)).toString());
  return m;
}

describe('fabric layout', function () {
  it('matches the installed libfabric headers (offsetof/sizeof/constants)', function () {
    const cc = spawnSync('cc', ['--version'], { stdio: 'ignore' }).status === 0;
    requireSystem(this, 'a C compiler', cc, INSTALL);
    requireSystem(this, 'libfabric-dev', fs.existsSync('/usr/include/rdma/fabric.h'), INSTALL);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fabric-layout-'));
    try {
      const src = path.join(dir, 'layout.c');
      const exe = path.join(dir, 'layout');
      fs.writeFileSync(src, layoutProgram());
      const build = spawnSync('cc', ['-o', exe, src], { encoding: 'utf8' });
      assert.strictEqual(build.status, 0, `cc failed:\n${build.stderr}`);
      const run = spawnSync(exe, [], { encoding: 'utf8' });
      assert.strictEqual(run.status, 0, run.stderr);
      const fromC = new Map(run.stdout.trim().split('\n').map((l) => l.split(' ') as [string, string]));
      const table = tableValues();
      const wrong = [...table].filter(([k, v]) => fromC.get(k) !== v).map(([k, v]) => `${k}: table ${v}, headers ${fromC.get(k)}`);
      assert.deepStrictEqual(wrong, [], `layout.ts disagrees with the headers:\n${wrong.join('\n')}`);
      assert.strictEqual(fromC.size, table.size);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
