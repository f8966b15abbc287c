#!/usr/bin/env node
// Node-RED loads a node's editor HTML, locale catalogues and icons from beside its .js file,
// so after tsc compiles nodes/<name>/<name>.ts into dist/, the non-TypeScript files follow it.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const nodesDir = path.join(root, 'nodes');
const iconsDir = path.join(root, 'icons');

for (const name of fs.readdirSync(nodesDir)) {
  const src = path.join(nodesDir, name);
  if (!fs.statSync(src).isDirectory() || name === 'common') continue;
  const dst = path.join(root, 'dist', 'nodes', name);
  fs.mkdirSync(dst, { recursive: true });
  for (const entry of fs.readdirSync(src)) {
    if (entry.endsWith('.html') || entry === 'locales') {
      fs.cpSync(path.join(src, entry), path.join(dst, entry), { recursive: true });
    }
  }
  if (fs.existsSync(iconsDir)) fs.cpSync(iconsDir, path.join(dst, 'icons'), { recursive: true });
}
