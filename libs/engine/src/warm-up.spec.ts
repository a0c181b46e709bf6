import { checkDockerfile, INSTRUCTION_KINDS, parseDockerfile } from '@stratum/dockerfile';
import { WARM_UP_DOCKERFILE, warmUpEngine } from './warm-up';

describe('warmUpEngine', () => {
  it('plans and expands every instruction of its sample Dockerfile', async () => {
    const parsed = parseDockerfile(WARM_UP_DOCKERFILE);
    const count = parsed.stages.reduce((n, s) => n + s.instructions.length, 0);
    expect(count).toBeGreaterThan(15);
    await expect(warmUpEngine()).resolves.toBe(count);
  });

  it('uses every instruction but the deprecated MAINTAINER, and the checks find nothing in it', () => {
    const parsed = parseDockerfile(WARM_UP_DOCKERFILE);
    const used = new Set(parsed.stages.flatMap((s) => s.instructions.map((i) => i.kind)));
    used.add('FROM');
    const missing = INSTRUCTION_KINDS.filter((k) => !used.has(k) && k !== 'MAINTAINER');
    expect(missing).toEqual([]);
    expect(checkDockerfile(WARM_UP_DOCKERFILE).warnings).toEqual([]);
  });
});
