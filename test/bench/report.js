// Reads peers.tsv and stratum.tsv ("workload tool phase seconds") and prints the comparison.
'use strict';
const { readFileSync } = require('node:fs');
const rows = process.argv.slice(2).flatMap((f) =>
  readFileSync(f, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('\t'))
    .map(([workload, tool, phase, value]) => ({ workload, tool, phase, value: Number(value) })),
);
const get = (w, tool, phase) =>
  rows.find((r) => r.workload === w && r.tool === tool && r.phase === phase)?.value;
const peerTotal = (w, tool, phase) => {
  const b = get(w, tool, `${phase}-build`);
  const p = get(w, tool, `${phase}-push`);
  return b === undefined || p === undefined ? undefined : b + p;
};
const fmt = (v) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(2));
const workloads = [
  ...new Set(
    rows.filter((r) => r.tool === 'stratum' && r.phase.endsWith('build+push')).map((r) => r.workload),
  ),
];
const lines = [];
lines.push(['workload', 'phase', 'stratum s', 'buildkit s', 'buildah s', 'stratum/buildkit'].join('\t'));
const sums = { stratum: 0, buildkit: 0, buildah: 0 };
for (const w of workloads) {
  for (const phase of ['cold', 'warm']) {
    const s = get(w, 'stratum', `${phase}-build+push`);
    const bk = peerTotal(w, 'buildkit', phase);
    const ba = peerTotal(w, 'buildah', phase);
    if (phase === 'cold') {
      sums.stratum += s ?? NaN;
      sums.buildkit += bk ?? NaN;
      sums.buildah += ba ?? NaN;
    }
    lines.push(
      [w, `${phase} build+push`, fmt(s), fmt(bk), fmt(ba), s && bk ? `${(s / bk).toFixed(2)}x` : '-'].join(
        '\t',
      ),
    );
  }
}
lines.push(
  [
    'ALL',
    'cold build+push (sum)',
    fmt(sums.stratum),
    fmt(sums.buildkit),
    fmt(sums.buildah),
    `${(sums.stratum / sums.buildkit).toFixed(2)}x`,
  ].join('\t'),
);
lines.push('');
for (const r of rows.filter((r) => r.phase.endsWith('rss-mb')))
  lines.push(`${r.workload}\t${r.phase}\t${r.value}`);
for (const r of rows.filter((r) => r.phase === 'skopeo-pull'))
  lines.push(`${r.workload}\tskopeo copy from ${r.tool}\t${fmt(r.value)} s`);
for (const r of rows.filter((r) => r.workload === 'snapshot'))
  lines.push(`snapshot\t${r.phase}\t${r.value} ms`);
process.stdout.write(`${lines.join('\n')}\n`);
