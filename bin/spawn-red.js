#!/usr/bin/env node
'use strict';
// The CLI is TypeScript compiled into dist/ (npm install builds it through the prepare script).
let cli;
try {
  cli = require('../dist/launcher/cli.js');
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND') {
    console.error('spawn-red: not built yet; run `npm run build` in the package folder');
    process.exit(1);
  }
  throw e;
}
cli.main(process.argv.slice(2)).then((code) => process.exit(code));
