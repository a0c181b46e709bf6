import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { planContextFiles } from '@stratum/dockerfile';
import { contextFingerprint, excludesWholeSubtrees, fingerprintEntries } from './context-cache';
import { locateDockerfile } from './context-tar';
import { writeTree } from '@stratum/testing';

let dir: string;

const write = (files: Record<string, string>): void => void writeTree(files, dir);

const fingerprint = (file?: string): Promise<string> => contextFingerprint(locateDockerfile(dir, file, dir));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'stratum-fp-spec-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('contextFingerprint', () => {
  it('is stable while nothing changes, and moves with a file content change of the same size and mtime', async () => {
    write({ Dockerfile: 'FROM scratch\n', 'src/a.txt': 'one', 'src/deep/b.txt': 'b' });
    const first = await fingerprint();
    expect(await fingerprint()).toBe(first);
    const t = new Date('2020-01-01T00:00:00Z');
    utimesSync(join(dir, 'src/deep/b.txt'), t, t);
    const before = await fingerprint();
    expect(before).not.toBe(first); // mtime moved
    writeFileSync(join(dir, 'src/deep/b.txt'), 'c');
    utimesSync(join(dir, 'src/deep/b.txt'), t, t); // same size, same mtime: ctime still moves
    expect(await fingerprint()).not.toBe(before);
  });

  it('moves when a file is added or removed, and when .dockerignore changes', async () => {
    write({ Dockerfile: 'FROM scratch\n', 'a.txt': 'a' });
    const base = await fingerprint();
    write({ 'new.txt': 'n' });
    const added = await fingerprint();
    expect(added).not.toBe(base);
    write({ '.dockerignore': 'new.txt\n' });
    expect(await fingerprint()).not.toBe(added);
  });

  it('does not walk a directory .dockerignore excludes for good', async () => {
    write({ Dockerfile: 'FROM scratch\n', '.dockerignore': 'node_modules\n', 'node_modules/x/y.js': '1' });
    const base = await fingerprint();
    write({ 'node_modules/x/z.js': '2' }); // never sent: the fingerprint need not move
    expect(await fingerprint()).toBe(base);
  });

  it('walks an excluded directory when an exception may re-include part of it', async () => {
    write({
      Dockerfile: 'FROM scratch\n',
      '.dockerignore': 'vendor\n!vendor/keep.txt\n',
      'vendor/keep.txt': 'k',
    });
    const base = await fingerprint();
    writeFileSync(join(dir, 'vendor/keep.txt'), 'changed');
    expect(await fingerprint()).not.toBe(base);
  });

  it('walks an excluded directory that holds the -f Dockerfile', async () => {
    write({ 'build/Dockerfile': 'FROM scratch\n', '.dockerignore': 'build\n' });
    const base = await fingerprint('build/Dockerfile');
    writeFileSync(join(dir, 'build/Dockerfile'), 'FROM scratch\nENV A=1\n');
    expect(await fingerprint('build/Dockerfile')).not.toBe(base);
  });

  it('covers a Dockerfile from outside the context', async () => {
    write({ 'ctx/a.txt': 'a', 'elsewhere/Dockerfile': 'FROM scratch\n' });
    const loc = locateDockerfile(join(dir, 'ctx'), join(dir, 'elsewhere/Dockerfile'), dir);
    const base = await contextFingerprint(loc);
    writeFileSync(join(dir, 'elsewhere/Dockerfile'), 'FROM scratch\nENV B=2\n');
    expect(await contextFingerprint(loc)).not.toBe(base);
  });

  it('fails naming the Dockerfile when there is none', async () => {
    write({ 'a.txt': 'a' });
    await expect(fingerprint()).rejects.toThrow(/Dockerfile/);
  });

  it('moves when a symlinked .dockerignore changes its target’s text', async () => {
    write({ Dockerfile: 'FROM scratch\n', 'notes.txt': 'n', '../shared.ignore': 'notes.txt\n' });
    symlinkSync('../shared.ignore', join(dir, '.dockerignore'));
    const base = await fingerprint();
    writeFileSync(join(dir, '../shared.ignore'), '\n');
    expect(await fingerprint()).not.toBe(base);
    rmSync(join(dir, '../shared.ignore'));
  });
});

describe('fingerprintEntries', () => {
  it('skips a subtree only for patterns whose wildcards stay within one path part', () => {
    expect(excludesWholeSubtrees(['node_modules', '*.log', 'a/*/c', '**/tmp', 'x/**', 'b?'])).toBe(true);
    for (const p of ['**x', 'a**b', 'a[^x]b', 'a\\*', '!keep']) {
      expect(excludesWholeSubtrees(['node_modules', p])).toBe(false);
    }
  });

  it('covers every path the planner sends (random trees and .dockerignore files)', async () => {
    // A small deterministic PRNG: the same cases on every run.
    let seed = 42;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const names = ['a', 'b', 'x', 'ax', 'a.log'];
    const pool = [
      'a',
      'x',
      '*.log',
      'a/x',
      '*/x',
      '**/x',
      'x/**',
      'a*',
      '?x',
      '**x',
      'a**b',
      'a[^x]b',
      '!a/x',
      'tmp',
      'a/**/b',
    ];
    for (let round = 0; round < 150; round++) {
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir);
      const files: Record<string, string> = { Dockerfile: 'FROM scratch\n' };
      for (let i = 0; i < 16; i++) {
        const depth = 1 + rand(4);
        const parts = Array.from({ length: depth }, () => names[rand(names.length)]);
        files[parts.join('/')] = 'f';
      }
      // The first rounds: each pattern alone over a tree with a/x/b and a/b/c (where `**x`,
      // `a**b` and `a[^x]b` exclude a directory but not what lies below it).
      const ignoreText =
        round < pool.length
          ? pool[round]
          : Array.from({ length: 1 + rand(3) }, () => pool[rand(pool.length)]).join('\n');
      if (round < pool.length) {
        files['a/x/b'] = 'f';
        files['a/b/c'] = 'f';
      }
      // A name both a file and a directory: keep the deeper one.
      for (const f of Object.keys(files)) {
        if (Object.keys(files).some((g) => g.startsWith(`${f}/`))) {
          delete files[f];
        }
      }
      write({ ...files, '.dockerignore': ignoreText });
      const loc = locateDockerfile(dir, undefined, dir);
      const walked = new Set(fingerprintEntries(loc, ignoreText).map(([p]) => p));
      const sent = await planContextFiles(dir, 'Dockerfile', { skipGitDir: false });
      const missing = sent.filter((p) => !walked.has(p));
      expect({ ignoreText, missing }).toEqual({ ignoreText, missing: [] });
    }
  });
});
