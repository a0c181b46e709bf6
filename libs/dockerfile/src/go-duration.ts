// Go's time.ParseDuration, used by HEALTHCHECK options (`30s`, `1m30s`, `1.5h`, `500ms`).
const UNITS: Record<string, number> = {
  ns: 1,
  us: 1e3,
  µs: 1e3,
  μs: 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/** Parses a Go duration string into nanoseconds; throws `time: invalid duration "x"`. */
export function parseGoDuration(text: string): number {
  const invalid = (): Error => new Error(`time: invalid duration "${text}"`);
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    sign = s.startsWith('-') ? -1 : 1;
    s = s.slice(1);
  }
  if (s === '0') {
    return 0;
  }
  if (s === '') {
    throw invalid();
  }
  const re = /^(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)/u;
  let total = 0;
  while (s !== '') {
    const m = re.exec(s);
    if (!m || ((m[1] ?? '') === '' && (m[2] ?? '') === '')) {
      if (m === null && /^\d*(?:\.\d*)?$/.test(s)) {
        throw new Error(`time: missing unit in duration "${text}"`);
      }
      throw invalid();
    }
    const unit = UNITS[m[3] ?? ''] ?? 1;
    total += Number(`${m[1] || '0'}.${m[2] || '0'}`) * unit;
    s = s.slice(m[0].length);
  }
  return Math.round(sign * total);
}
