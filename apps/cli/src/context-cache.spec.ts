import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { contextFingerprint } from './context-cache';
import { locateDockerfile } from './context-tar';

let dir: string;

function write(files: Record<string, string>): void {
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, p)), { recursive: true });
    writeFileSync(join(dir, p), content);
  }
}

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
});
