import { buildBadgeSvg } from './badge-svg';

describe('buildBadgeSvg', () => {
  it.each([
    ['succeeded', 'passing', '#4c1'],
    ['failed', 'failing', '#e05d44'],
    ['running', 'running', '#007ec6'],
    [null, 'unknown', '#9f9f9f'],
  ] as const)('%s says %s in %s', (state, message, colour) => {
    const svg = buildBadgeSvg(state);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain(`aria-label="build: ${message}"`);
    expect(svg).toContain(`fill="${colour}"`);
  });
});
