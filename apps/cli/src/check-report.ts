import type { CheckResult } from '@stratum/dockerfile';

/**
 * `stratum build --check` output, as `docker build --check` prints it: a summary line, then
 * each warning with its rule, URL, message and the Dockerfile lines around it (`>>>` marks the
 * instruction's lines).
 */
export function formatCheckReport(result: CheckResult, dockerfile: string, name: string): string {
  const n = result.warnings.length;
  const parts: string[] = [
    n === 0
      ? 'Check complete, no warnings found.\n'
      : `Check complete, ${n} warning${n === 1 ? ' has' : 's have'} been found!\n`,
  ];
  const lines = dockerfile.replace(/\r?\n$/, '').split(/\r?\n/);
  const width = String(lines.length + 1).length;
  for (const w of result.warnings) {
    parts.push(`\nWARNING: ${w.rule} - ${w.url}\n${w.message}\n${name}:${w.line}\n--------------------\n`);
    const from = Math.max(1, w.line - 1);
    const to = Math.min(lines.length + 1, w.endLine + 1);
    for (let i = from; i <= to; i++) {
      const marker = i >= w.line && i <= w.endLine ? '>>>' : '   ';
      const text = lines[i - 1] ?? '';
      parts.push(` ${String(i).padStart(width + 2)} | ${marker} ${text}`.trimEnd() + '\n');
    }
    parts.push('--------------------\n');
  }
  if (result.error !== undefined) {
    parts.push(`ERROR: ${result.error}\n`);
  }
  return parts.join('');
}
