// Reads each run's peers.tsv and stratum.tsv ("workload tool phase value") and prints the
// comparison: one table per run, then (with more than one run) the median of each figure and
// of each ratio over the runs.
// Usage: node report.js RUN_DIR...   (or FILE... for a single run)
'use strict';
const { readFileSync, statSync } = require('node:fs');
const { join } = require('node:path');

const parse = (f) =>
  readFileSync(f, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('\t'))
    .map(([workload, tool, phase, value]) => ({ workload, tool, phase, value: Number(value) }));
const args = process.argv.slice(2);
const runs = args.every((a) => statSync(a).isDirectory())
  ? args.map((d) => ['peers.tsv', 'stratum.tsv'].flatMap((f) => parse(join(d, f))))
  : [args.flatMap(parse)];

const median = (values) => {
  const v = values.filter((x) => x !== undefined && !Number.isNaN(x)).sort((a, b) => a - b);
  return v.length === 0
    ? undefined
    : v.length % 2
      ? v[v.length >> 1]
      : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const fmt = (v) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(2));

/** The figures of one run: seconds per workload and phase, sums, side figures. */
function figures(rows) {
  const get = (w, tool, phase) =>
    rows.find((r) => r.workload === w && r.tool === tool && r.phase === phase)?.value;
  const peerTotal = (w, tool, phase) => {
    const b = get(w, tool, `${phase}-build`);
    const p = get(w, tool, `${phase}-push`);
    return b === undefined || p === undefined ? undefined : b + p;
  };
  const workloads = [
    ...new Set(
      rows.filter((r) => r.tool === 'stratum' && r.phase.endsWith('build+push')).map((r) => r.workload),
    ),
  ];
  const table = [];
  const sums = { stratum: 0, buildkit: 0, buildah: 0 };
  // The phases each workload has, in the order measured (cold, warm; the project's add deps).
  const phasesOf = (w) =>
    rows
      .filter((r) => r.workload === w && r.tool === 'stratum' && r.phase.endsWith('-build+push'))
      .map((r) => r.phase.slice(0, -'-build+push'.length));
  for (const w of workloads) {
    for (const phase of phasesOf(w)) {
      const s = get(w, 'stratum', `${phase}-build+push`);
      const bk = peerTotal(w, 'buildkit', phase);
      const ba = peerTotal(w, 'buildah', phase);
      if (phase === 'cold') {
        sums.stratum += s ?? NaN;
        sums.buildkit += bk ?? NaN;
        sums.buildah += ba ?? NaN;
      }
      table.push({ w, phase: `${phase} build+push`, s, bk, ba, ratio: s && bk ? s / bk : undefined });
    }
  }
  table.push({
    w: 'ALL',
    phase: 'cold build+push (sum)',
    s: sums.stratum,
    bk: sums.buildkit,
    ba: sums.buildah,
    ratio: sums.stratum / sums.buildkit,
  });
  const side = rows
    .filter(
      (r) =>
        r.phase.endsWith('rss-mb') ||
        r.phase === 'skopeo-pull' ||
        r.workload === 'snapshot' ||
        r.workload === 'throughput',
    )
    .map((r) => ({ key: `${r.workload}\t${r.tool}\t${r.phase}`, value: r.value }));
  return { table, side };
}

function print(title, fig) {
  const lines = [
    title,
    ['workload', 'phase', 'stratum s', 'buildkit s', 'buildah s', 'stratum/buildkit'].join('\t'),
  ];
  for (const t of fig.table) {
    lines.push(
      [
        t.w,
        t.phase,
        fmt(t.s),
        fmt(t.bk),
        fmt(t.ba),
        t.ratio === undefined ? '-' : `${t.ratio.toFixed(2)}x`,
      ].join('\t'),
    );
  }
  lines.push('');
  for (const s of fig.side) {
    lines.push(`${s.key}\t${Number.isInteger(s.value) ? s.value : s.value.toFixed(2)}`);
  }
  const tp = (tool, metric) => fig.side.find((s) => s.key === `throughput\t${tool}\t${metric}`)?.value;
  if (tp('stratum', 'builds-per-minute') !== undefined && tp('buildkit', 'builds-per-minute')) {
    lines.push(
      `throughput\tstratum/buildkit builds per minute\t${(tp('stratum', 'builds-per-minute') / tp('buildkit', 'builds-per-minute')).toFixed(2)}x`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n\n`);
}

const all = runs.map(figures);
all.forEach((fig, i) => print(runs.length > 1 ? `run ${i + 1} of ${runs.length}` : 'results', fig));
if (all.length > 1) {
  const med = {
    table: all[0].table.map((row, i) => ({
      ...row,
      s: median(all.map((f) => f.table[i]?.s)),
      bk: median(all.map((f) => f.table[i]?.bk)),
      ba: median(all.map((f) => f.table[i]?.ba)),
      ratio: median(all.map((f) => f.table[i]?.ratio)),
    })),
    side: all[0].side.map((s) => ({
      key: s.key,
      value: median(all.map((f) => f.side.find((x) => x.key === s.key)?.value)),
    })),
  };
  print(`median of ${all.length} runs (each ratio: the median of the runs' ratios)`, med);
}
