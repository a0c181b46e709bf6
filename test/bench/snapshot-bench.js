// Snapshot cost micro-benchmark: a 200 MB lower layer, then changes of growing size in the
// upper dir; times snapshotDirectory (walk + tar + gzip + hashing) of the upper dir only.
// Prints TSV rows "snapshot stratum <what> <milliseconds>".
'use strict';
const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = require('node:fs');
const { join } = require('node:path');
const { tmpdir } = require('node:os');
const { randomBytes } = require('node:crypto');
const layers = require('../../dist/libs/layers/src');

const RUNS = 15;

async function snapshotMs(upper) {
  const start = process.hrtime.bigint();
  const { stream, done } = layers.snapshotDirectory(upper, { compression: 'gzip' });
  stream.resume();
  const result = await done;
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, size: result.size };
}

async function main() {
  const root = mkdtempSync(join(tmpdir(), 'stratum-snapbench-'));
  const lower = join(root, 'lower');
  for (let d = 0; d < 100; d++) {
    mkdirSync(join(lower, `d${d}`), { recursive: true });
    for (let f = 0; f < 20; f++) {
      writeFileSync(join(lower, `d${d}`, `f${f}`), randomBytes(100 * 1024)); // 100 x 20 x 100 KiB = 200 MB
    }
  }
  const cases = [
    ['one-file-1KiB', 1024],
    ['one-file-1MiB', 1024 * 1024],
    ['one-file-10MiB', 10 * 1024 * 1024],
    ['one-file-50MiB', 50 * 1024 * 1024],
  ];
  try {
    for (const [name, bytes] of cases) {
      const dir = join(root, name);
      const upper = join(dir, 'upper');
      const work = join(dir, 'work');
      const merged = join(dir, 'merged');
      for (const p of [upper, work, merged]) mkdirSync(p, { recursive: true });
      await layers.mountOverlay({ lowerDirs: [lower], upperDir: upper, workDir: work, target: merged });
      try {
        writeFileSync(join(merged, 'd7', 'f3'), randomBytes(bytes)); // modifies a lower file
      } finally {
        await layers.unmountOverlay(merged);
      }
      await snapshotMs(upper); // warm-up (page cache, compressor start)
      // Median of 15 (5 were too few on a busy 2-core host: one stall moved the figure 2-5x),
      // and the fastest run beside it: the cost without other processes in the way.
      const runs = [];
      for (let i = 0; i < RUNS; i++) runs.push((await snapshotMs(upper)).ms);
      runs.sort((a, b) => a - b);
      process.stdout.write(`snapshot\tstratum\t${name}-on-200MB-base-ms\t${runs[RUNS >> 1].toFixed(1)}\n`);
      process.stdout.write(`snapshot\tstratum\t${name}-on-200MB-base-min-ms\t${runs[0].toFixed(1)}\n`);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
