import { ImageHistoryEntry } from '@stratum/images';
import { ago, ellipsis, humanDuration, humanSize, quotedCommand, rfc3339, shortId, table } from './format';
import { historyTable } from './image-commands';

describe('docker-shaped output', () => {
  it('humanSize gives go-units HumanSizeWithPrecision(size, 3)', () => {
    expect(humanSize(0)).toBe('0B');
    expect(humanSize(3)).toBe('3B');
    expect(humanSize(999)).toBe('999B');
    expect(humanSize(1000)).toBe('1kB');
    expect(humanSize(1234)).toBe('1.23kB');
    expect(humanSize(12_345)).toBe('12.3kB');
    expect(humanSize(4_261_000)).toBe('4.26MB');
    expect(humanSize(100_000_000)).toBe('100MB');
    // Go's %.3g switches to an exponent when rounding reaches the next power of ten
    expect(humanSize(999_600)).toBe('1e+03kB');
  });

  it('humanDuration follows go-units HumanDuration', () => {
    expect(humanDuration(400)).toBe('Less than a second');
    expect(humanDuration(1000)).toBe('1 second');
    expect(humanDuration(59_000)).toBe('59 seconds');
    expect(humanDuration(60_000)).toBe('About a minute');
    expect(humanDuration(45 * 60_000)).toBe('45 minutes');
    expect(humanDuration(80 * 60_000)).toBe('About an hour');
    expect(humanDuration(5 * 3_600_000)).toBe('5 hours');
    expect(humanDuration(3 * 86_400_000)).toBe('3 days');
    expect(humanDuration(20 * 86_400_000)).toBe('2 weeks');
    expect(humanDuration(90 * 86_400_000)).toBe('3 months');
    expect(humanDuration(800 * 86_400_000)).toBe('2 years');
    expect(ago('2026-01-01T00:00:00Z', Date.parse('2026-01-01T00:02:30Z'))).toBe('2 minutes ago');
    expect(ago(null)).toBe('N/A');
  });

  it('rfc3339 is to the second in UTC; ellipsis cuts to the width with …', () => {
    expect(rfc3339('2026-03-04T05:06:07.890Z')).toBe('2026-03-04T05:06:07Z');
    expect(ellipsis('abcdef', 6)).toBe('abcdef');
    expect(ellipsis('abcdefg', 6)).toBe('abcde…');
    expect(shortId('sha256:0123456789abcdef0123')).toBe('0123456789ab');
    expect(quotedCommand(['sh', '-c', 'echo "hi" there && exit 1'], true)).toBe('"sh -c echo \\"hi\\" the…"');
    expect(quotedCommand(['sh', '-c', 'echo'], false)).toBe('"sh -c echo"');
  });

  it('table pads every cell but the last as tabwriter(minwidth 10, padding 3) does', () => {
    expect(
      table([
        ['A', 'BB', 'C'],
        ['long-cell-value', 'x', ''],
      ]),
    ).toBe('A                 BB        C\nlong-cell-value   x         \n');
  });

  it('historyTable prints docker history rows, truncated or not, human or not', () => {
    const rows: ImageHistoryEntry[] = [
      {
        id: `sha256:${'ab'.repeat(32)}`,
        created: '2026-01-01T00:00:00Z',
        createdBy: '/bin/sh -c echo a very long command line that docker cuts\tat 45',
        size: 1_234_567,
        comment: '',
        emptyLayer: false,
        layer: `sha256:${'cd'.repeat(32)}`,
      },
      {
        id: null,
        created: '2025-12-31T00:00:00Z',
        createdBy: '',
        size: 0,
        comment: 'Imported from -',
        emptyLayer: false,
        layer: null,
      },
    ];
    const now = Date.parse('2026-01-01T00:00:05Z');
    expect(historyTable(rows, { human: true, noTrunc: false, now })).toBe(
      [
        'IMAGE          CREATED         CREATED BY                                      SIZE      COMMENT',
        'abababababab   5 seconds ago   /bin/sh -c echo a very long command line tha…   1.23MB    ',
        '<missing>      24 hours ago                                                    0B        Imported from -',
        '',
      ].join('\n'),
    );
    expect(historyTable(rows, { human: false, noTrunc: true, now }).split('\n')[1]).toBe(
      `sha256:${'ab'.repeat(32)}   2026-01-01T00:00:00Z   /bin/sh -c echo a very long command line that docker cuts at 45   1234567   `,
    );
  });
});
