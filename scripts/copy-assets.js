#!/usr/bin/env node
// Node-RED loads a node's editor HTML, locale catalogues and icons from beside its .js file,
// so after tsc compiles nodes/<name>/<name>.ts into dist/, the non-TypeScript files follow it.
// test/nodes holds helper nodes for tests and benchmarks; their HTML follows them the same way.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const iconsDir = path.join(root, 'icons');

function copyAssets(srcDir, dstDir, withIcons) {
  fs.mkdirSync(dstDir, { recursive: true });
  for (const entry of fs.readdirSync(srcDir)) {
    if (entry.endsWith('.html') || entry === 'locales') {
      fs.cpSync(path.join(srcDir, entry), path.join(dstDir, entry), { recursive: true });
    }
  }
  if (withIcons && fs.existsSync(iconsDir)) fs.cpSync(iconsDir, path.join(dstDir, 'icons'), { recursive: true });
}

// Node-RED finds a module's icons in the icons/ folder beside any of its node files and serves
// them for every node of the module, so one copy (beside the first node) is enough; more copies
// would list each icon several times in the editor's icon picker.
const nodesDir = path.join(root, 'nodes');
const nodeNames = fs.readdirSync(nodesDir).filter((n) => n !== 'common' && fs.statSync(path.join(nodesDir, n)).isDirectory()).sort();
nodeNames.forEach((name, i) => copyAssets(path.join(nodesDir, name), path.join(root, 'dist', 'nodes', name), i === 0));
copyAssets(path.join(root, 'test', 'nodes'), path.join(root, 'dist', 'test', 'nodes'), false);
