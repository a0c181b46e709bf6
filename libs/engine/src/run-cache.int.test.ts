// RUN --mount=type=cache directories made by two steps at once (real flock): one directory,
// made once, that both steps keep holding.
import { mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTools } from '@stratum/testing';
import { RunCacheStore } from './run-cache';

let root: string;

beforeAll(async () => {
  requireTools('flock');
  root = await mkdtemp(join(tmpdir(), 'stratum-run-cache-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

it('two shared steps making one cache at once get the one directory, made once, neither of them deleted', async () => {
  const store = new RunCacheStore(root);
  const made: string[] = [];
  const init = async (dir: string): Promise<void> => {
    made.push(dir);
    await new Promise((r) => setTimeout(r, 300)); // both steps are inside acquire meanwhile
    await writeFile(join(dir, 'maker'), dir);
  };
  const signal = new AbortController().signal;
  const [a, b] = await Promise.all([
    store.acquire('npm', null, 'shared', init, signal),
    store.acquire('npm', null, 'shared', init, signal),
  ]);
  try {
    expect(a.dir).toBe(b.dir);
    // A second rename over the first one's empty directory replaced it: that step held a
    // deleted directory (runc: "no such file or directory" binding it).
    expect(made).toHaveLength(1);
    const handle = await open(a.dir, 'r');
    try {
      expect((await handle.stat()).nlink).toBeGreaterThan(0);
      expect((await handle.stat()).ino).toBe((await stat(b.dir)).ino);
    } finally {
      await handle.close();
    }
  } finally {
    await a.release();
    await b.release();
  }
});
