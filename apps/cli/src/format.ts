// Output as the docker CLI prints it, so that scripts and eyes used to docker read ours alike:
// its table writer, size and age units (github.com/docker/go-units), truncation and short ids.

/**
 * Aligns cells as Go's text/tabwriter does with the docker CLI's settings (minwidth 10,
 * padding 3, spaces): every cell but a row's last is padded to its column's width; the last
 * cell is written as is. Widths count characters (code points), as tabwriter counts runes.
 */
export function table(rows: readonly (readonly string[])[]): string {
  const width = (s: string): number => [...s].length;
  const widths: number[] = [];
  for (const row of rows) {
    row.slice(0, -1).forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, Math.max(10, width(cell) + 3));
    });
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell + ' '.repeat(widths[i] - width(cell))))
        .join(''),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/** Go's `%.<p>g`: `p` significant digits, no trailing zeros, exponent form past the precision. */
function goG(x: number, precision: number): string {
  const s = x.toPrecision(precision);
  const e = s.indexOf('e');
  if (e < 0) {
    return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
  }
  const mantissa = s.slice(0, e);
  const exp = Number(s.slice(e + 1));
  const m = mantissa.includes('.') ? mantissa.replace(/\.?0+$/, '') : mantissa;
  return `${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
}

const DECIMAL_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];

/** go-units HumanSizeWithPrecision: decimal units, `precision` significant digits (`4.26MB`, `0B`). */
export function humanSize(bytes: number, precision = 3): string {
  let size = bytes;
  let i = 0;
  while (size >= 1000 && i < DECIMAL_UNITS.length - 1) {
    size /= 1000;
    i++;
  }
  return `${goG(size, precision)}${DECIMAL_UNITS[i]}`;
}

/** go-units HumanDuration (`Less than a second`, `About a minute`, `3 hours`, `2 weeks`…). */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < 1) {
    return 'Less than a second';
  }
  if (seconds === 1) {
    return '1 second';
  }
  if (seconds < 60) {
    return `${seconds} seconds`;
  }
  const minutes = Math.trunc(seconds / 60);
  if (minutes === 1) {
    return 'About a minute';
  }
  if (minutes < 60) {
    return `${minutes} minutes`;
  }
  const hours = Math.round(ms / 3_600_000);
  if (hours === 1) {
    return 'About an hour';
  }
  if (hours < 48) {
    return `${hours} hours`;
  }
  if (hours < 24 * 7 * 2) {
    return `${Math.trunc(hours / 24)} days`;
  }
  if (hours < 24 * 30 * 2) {
    return `${Math.trunc(hours / 24 / 7)} weeks`;
  }
  if (hours < 24 * 365 * 2) {
    return `${Math.trunc(hours / 24 / 30)} months`;
  }
  return `${Math.trunc(ms / 3_600_000 / 24 / 365)} years`;
}

/** `2 minutes ago`, as docker's CREATED columns; `N/A` when unknown. */
export function ago(iso: string | null, now: number = Date.now()): string {
  if (iso === null) {
    return 'N/A';
  }
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 'N/A' : `${humanDuration(Math.max(0, now - t))} ago`;
}

/**
 * Go's time.RFC3339 in UTC, to the second (`docker history -H=false`, which prints the local
 * zone: the same text where TZ is UTC).
 */
export function rfc3339(iso: string | null): string {
  if (iso === null) {
    return 'N/A';
  }
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 'N/A' : `${new Date(Math.floor(t / 1000) * 1000).toISOString().slice(0, 19)}Z`;
}

/** The docker CLI's Ellipsis: at most `max` characters, the last one `…` when cut. */
export function ellipsis(s: string, max: number): string {
  const chars = [...s];
  if (chars.length <= max) {
    return s;
  }
  return `${chars.slice(0, max - 1).join('')}…`;
}

/** `sha256:0123…` -> its first 12 hex digits, as docker shows image ids. */
export function shortId(digest: string): string {
  const hex = digest.startsWith('sha256:') ? digest.slice(7) : digest;
  return hex.slice(0, 12);
}

/**
 * A command as `docker ps` shows it: the argv joined with spaces (no shell quoting, as the
 * daemon joins Path and Args), cut to 20 characters, then Go-quoted (`"sh -c echo hi"`).
 */
export function quotedCommand(argv: readonly string[], truncate: boolean): string {
  const cmd = argv.join(' ');
  return JSON.stringify(truncate ? ellipsis(cmd, 20) : cmd);
}

/** Pretty JSON as `docker inspect` prints it (4-space indent, and a newline). */
export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 4)}\n`;
}
