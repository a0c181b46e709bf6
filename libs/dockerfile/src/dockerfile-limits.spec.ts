import { createStageScope, expandStage, planBuild } from './build-planner';
import { DockerfileError } from './dockerfile-error';
import { DOCKERFILE_LIMITS } from './dockerfile-limits';
import { parseDockerfile } from './dockerfile-parser';
import { expandInstruction } from './expand-instruction';

const lines = (...ls: string[]): string => ls.join('\n') + '\n';
const L = DOCKERFILE_LIMITS;

/** Parses, plans and expands every instruction of the last stage, as a build does. */
function runAll(text: string, buildArgs: Record<string, string> = {}): void {
  const plan = planBuild(parseDockerfile(text), { buildArgs });
  for (const stage of plan.stages) {
    expandStage(plan, stage.index);
  }
}

function limitError(fn: () => unknown): DockerfileError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DockerfileError);
    const e = err as DockerfileError;
    expect(e.code).toBe('DOCKERFILE_LIMIT');
    return e;
  }
  throw new Error('expected a DOCKERFILE_LIMIT error');
}

/** Fails when `fn` takes longer than `ms` (the hostile inputs used to take minutes or the heap). */
function fast<T>(ms: number, fn: () => T): T {
  const t0 = Date.now();
  const out = fn();
  expect(Date.now() - t0).toBeLessThan(ms);
  return out;
}

describe('Dockerfile limits', () => {
  it('ENV A=$A$A forty times fails at the doubling that passes maxExpandedWordLength, with its line', () => {
    const text = lines('FROM scratch', 'ENV A=x', ...Array.from({ length: 40 }, () => 'ENV A=$A$A'));
    const err = fast(2000, () => limitError(() => runAll(text)));
    // Line 2 sets 1 character; line 2+k holds 2^k; 2^18 > 128 KiB is line 20.
    expect(err.line).toBe(20);
    expect(err.message).toMatch(/^dockerfile error on line 20: .*maxExpandedWordLength \(131072\)/);
  });

  it('the same doubling as an ARG chain, global and in a stage', () => {
    const chain = (prefix: string): string[] =>
      Array.from({ length: 40 }, (_, k) => `ARG ${prefix}${k + 1}=$${prefix}${k}$${prefix}${k}`);
    const global = lines('ARG G0=x', ...chain('G'), 'FROM scratch');
    expect(fast(2000, () => limitError(() => runAll(global))).line).toBe(19);
    const staged = lines('FROM scratch', 'ARG S0=x', ...chain('S'));
    expect(fast(2000, () => limitError(() => runAll(staged))).line).toBe(20);
  });

  it('a build arg doubled by ARG defaults fails the same way', () => {
    const text = lines('FROM scratch', 'ARG A', ...Array.from({ length: 30 }, () => 'ENV A=$A$A$A$A'));
    // 32 KiB given; ×4 = 128 KiB fits exactly, ×16 does not: line 4.
    expect(limitError(() => runAll(text, { A: 'y'.repeat(32 * 1024) })).line).toBe(4);
  });

  it('a word just under the limit is fine', () => {
    const half = 'h'.repeat(L.maxExpandedWordLength / 2);
    const text = lines('FROM scratch', `ENV H=${half.slice(0, 60_000)}`, 'ENV W=$H$H');
    expect(() => runAll(text)).not.toThrow();
  });

  it('${A//?/$A} (a replacement multiplying two lengths) stops at maxExpandedWordLength', () => {
    const text = lines('FROM scratch', `ENV A=${'a'.repeat(1000)}`, 'ENV B=${A//?/$A}');
    const err = fast(2000, () => limitError(() => runAll(text)));
    expect(err.line).toBe(3);
    expect(err.message).toContain('maxExpandedWordLength');
  });

  it('${A%%*y} and ${A//*y/z} over a 128 KiB value stop at maxPatternWork instead of running for minutes', () => {
    const big = lines('FROM scratch', 'ENV A=x', ...Array.from({ length: 17 }, () => 'ENV A=$A$A')); // 2^17
    for (const expr of ['${A%%*y}', '${A#*y}', '${A//*y/z}']) {
      const err = fast(2000, () => limitError(() => runAll(big + `ENV B=${expr}\n`)));
      expect(err.line).toBe(20);
      expect(err.message).toContain('maxPatternWork (16000000)');
    }
    // A plain (non-glob) pattern needs no search, whatever the length.
    const plain = fast(2000, () => {
      const plan = planBuild(parseDockerfile(big + 'ENV B=${A%%xx}C\n'), {});
      return expandStage(plan, 0).at(-1)?.runEnvironment.B;
    });
    expect(plain).toBe('x'.repeat(131070) + 'C');
  });

  it('glob patterns on a few thousand characters still work', () => {
    const text = lines('FROM scratch', `ENV A=${'a'.repeat(4000)}.tar.gz`, 'ENV B=${A%%.*} C=${A##*.}');
    const plan = planBuild(parseDockerfile(text), {});
    const env = expandStage(plan, 0).at(-1)?.runEnvironment;
    expect([env?.B.length, env?.C]).toEqual([4000, 'gz']);
  });

  it("the stage's variables together may not pass maxEnvironmentLength", () => {
    // 60 KiB literal (under the 64 KiB line limit), each ENV below holds 120 KiB: the ninth
    // one brings the stage past 1 MiB.
    const text = lines(
      'FROM scratch',
      `ENV B=${'b'.repeat(60 * 1024)}`,
      ...Array.from({ length: 12 }, (_, k) => `ENV V${k}=$B$B`),
    );
    const err = limitError(() => runAll(text));
    expect(err.line).toBe(2 + 9);
    expect(err.message).toContain('maxEnvironmentLength');
  });

  it('LABELs each under the word limit stop at maxSubstitutedLength for the stage', () => {
    const text = lines(
      'FROM scratch',
      `ENV B=${'b'.repeat(60 * 1024)}`,
      ...Array.from({ length: 300 }, (_, k) => `LABEL l${k}=$B$B`),
    );
    const err = fast(5000, () => limitError(() => runAll(text)));
    // Each LABEL substitutes 120 KiB: 16 MiB / 120 KiB = 136.5, so the 137th (line 139).
    expect(err.line).toBe(2 + 137);
    expect(err.message).toContain('maxSubstitutedLength');
  });

  it('refuses a line over 64 KiB with its number, as BuildKit does', () => {
    const text = lines('FROM scratch', 'RUN true', `RUN echo ${'a'.repeat(L.maxLineLength)}`);
    const err = limitError(() => parseDockerfile(text));
    expect(err.line).toBe(3);
    expect(err.message).toMatch(
      /^dockerfile error on line 3: line of 65545 characters exceeds the limit maxLineLength \(65536\)/,
    );
  });

  it('refuses an instruction (continuations) over maxInstructionLength', () => {
    const piece = `echo ${'c'.repeat(60_000)} \\`;
    const text = lines('FROM scratch', 'RUN true && \\', ...Array.from({ length: 20 }, () => piece), 'true');
    const err = limitError(() => parseDockerfile(text));
    expect(err.line).toBe(2);
    expect(err.message).toContain('maxInstructionLength');
  });

  it('refuses a heredoc body over maxInstructionLength', () => {
    const text = lines(
      'FROM scratch',
      'COPY <<EOF /big',
      ...Array.from({ length: 20 }, () => 'd'.repeat(60_000)),
      'EOF',
    );
    const err = limitError(() => parseDockerfile(text));
    expect(err.line).toBe(2);
    expect(err.message).toContain('maxInstructionLength');
  });

  it('an expanded heredoc body is bounded by maxExpandedHeredocLength, not the word limit', () => {
    const body = Array.from({ length: 4 }, () => '$B').join('\n');
    const ok = lines('FROM scratch', `ENV B=${'e'.repeat(60_000)}`, 'COPY <<EOF /f', body, 'EOF');
    expect(() => runAll(ok)).not.toThrow(); // 240,000 characters: over the word limit, fine here
    const many = Array.from({ length: 20 }, () => '$B$B').join('\n');
    const big = lines('FROM scratch', `ENV B=${'e'.repeat(60_000)}`, 'COPY <<EOF /f', many, 'EOF');
    const err = limitError(() => runAll(big));
    expect(err.line).toBe(3);
    expect(err.message).toContain('maxExpandedHeredocLength');
  });

  it('counts: instructions, stages, ARGs, ENV+LABEL entries, build args', () => {
    const labels = lines(
      'FROM scratch',
      ...Array.from({ length: L.maxInstructions }, (_, k) => `LABEL a${k}=1`),
    );
    expect(limitError(() => parseDockerfile(labels)).line).toBe(L.maxInstructions + 1);

    const stages = lines(...Array.from({ length: L.maxStages + 1 }, (_, k) => `FROM scratch AS s${k}`));
    const s = limitError(() => parseDockerfile(stages));
    expect([s.line, s.message]).toEqual([L.maxStages + 1, expect.stringContaining('maxStages (500)')]);

    const args = lines('FROM scratch', ...Array.from({ length: 501 }, (_, k) => `ARG a${k} b${k}`));
    const a = limitError(() => parseDockerfile(args));
    expect([a.line, a.message]).toEqual([2 + 500, expect.stringContaining('maxArgs (1000)')]);

    const pairs = (k: number): string => Array.from({ length: 2001 }, (_, j) => `k${k}_${j}=v`).join(' ');
    const entries = lines(
      'FROM scratch',
      ...Array.from({ length: 10 }, (_, k) => `${k % 2 ? 'LABEL' : 'ENV'} ${pairs(k)}`),
    );
    const e = limitError(() => parseDockerfile(entries));
    expect([e.line, e.message]).toEqual([11, expect.stringContaining('maxKeyValueEntries (20000)')]);

    const buildArgs = Object.fromEntries(Array.from({ length: L.maxArgs + 1 }, (_, k) => [`b${k}`, 'v']));
    const b = limitError(() => planBuild(parseDockerfile('FROM scratch\n'), { buildArgs }));
    expect(b.message).toContain('maxArgs');
  });

  it('refuses a Dockerfile over maxDockerfileLength before scanning it', () => {
    const text = 'FROM scratch\n' + `# ${'z'.repeat(60_000)}\n`.repeat(300);
    const err = limitError(() => parseDockerfile(text));
    expect(err.line).toBeUndefined();
    expect(err.message).toContain('maxDockerfileLength');
  });

  it('10,000 LABELs parse, plan and expand in a few seconds at most', () => {
    const text = lines(
      'FROM scratch',
      ...Array.from({ length: 10_000 }, (_, k) => `LABEL l${k}="v $K ${k}"`),
    );
    fast(3000, () => {
      const plan = planBuild(parseDockerfile(text), { buildArgs: {} });
      const scope = createStageScope(plan);
      for (const raw of plan.stages[0].stage.instructions) {
        scope.apply(expandInstruction(raw, scope));
      }
    });
  });
});
