#!/usr/bin/env node
// The CLI as one file: dist/apps/cli/stratum.js, bundled by esbuild from what tsc compiled
// (part of `npm run build`; the `stratum` launcher runs it). A CLI run is mostly Node starting
// and loading modules: resolving and reading ~60 files took ~10 ms of a ~120 ms cached build,
// one file does not (measured on the steps workload, median of 15: 128 -> 118 ms).
// zod and tar stay outside: the CLI requires them only on a path that needs them (a server's
// config, `--output`), and parsing them on every start would cost more than it saves.
'use strict';
const { buildSync } = require('esbuild');
const { join } = require('node:path');

const root = join(__dirname, '..');
buildSync({
  entryPoints: [join(root, 'dist/apps/cli/src/bundle-entry.js')],
  outfile: join(root, 'dist/apps/cli/stratum.js'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  external: ['zod', 'tar'],
  logLevel: 'warning',
});
