import { linkSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Parser, ReadEntry } from 'tar';
import { planContext, tarContext } from './context-tar';
import { writeTree } from '@stratum/testing';

let dir: string;

const write = (files: Record<string, string>): void => void writeTree(files, dir);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'stratum-cli-spec-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('planContext', () => {
  it('sends everything, parents before children, when there is no .dockerignore', async () => {
    write({ Dockerfile: 'FROM scratch', 'a/b/c.txt': 'c', 'z.txt': 'z' });
    const plan = await planContext(dir, undefined, dir);
    expect(plan.files).toEqual(['Dockerfile', 'a', 'a/b', 'a/b/c.txt', 'z.txt']);
    expect(plan.dockerfile).toBe('Dockerfile');
    expect(plan.extraDockerfile).toBeNull();
  });

  it('excludes ignored files and directories', async () => {
    write({
      Dockerfile: 'x',
      '.dockerignore': 'node_modules\n*.log\nbig.bin\n',
      'node_modules/x/index.js': 'x',
      'app.log': 'l',
      'big.bin': 'b',
      'src/main.ts': 'm',
    });
    const plan = await planContext(dir, undefined, dir);
    expect(plan.files).toEqual(['.dockerignore', 'Dockerfile', 'src', 'src/main.ts']);
  });

  it('honours `!` negations, also inside an ignored directory', async () => {
    write({
      Dockerfile: 'x',
      '.dockerignore': '*.md\n!README.md\ndocs\n!docs/keep.txt\n',
      'README.md': 'r',
      'CHANGES.md': 'c',
      'docs/drop.txt': 'd',
      'docs/keep.txt': 'k',
    });
    const plan = await planContext(dir, undefined, dir);
    expect(plan.files).toEqual(['.dockerignore', 'Dockerfile', 'README.md', 'docs', 'docs/keep.txt']);
  });

  it('matches `**` at any depth', async () => {
    write({
      Dockerfile: 'x',
      '.dockerignore': '**/*.tmp\n',
      'a.tmp': '1',
      'a/b/c.tmp': '2',
      'a/b/c.txt': '3',
    });
    const plan = await planContext(dir, undefined, dir);
    expect(plan.files).toEqual(['.dockerignore', 'Dockerfile', 'a', 'a/b', 'a/b/c.txt']);
  });

  it('always sends the Dockerfile and .dockerignore, even when ignored', async () => {
    write({ Dockerfile: 'x', '.dockerignore': '*\n', 'other.txt': 'o' });
    const plan = await planContext(dir, undefined, dir);
    expect(plan.files).toEqual(['.dockerignore', 'Dockerfile']);
  });

  it('always sends a -f Dockerfile inside the context, even when its directory is ignored', async () => {
    write({ 'build/Dockerfile.prod': 'x', 'build/other': 'o', '.dockerignore': 'build\n' });
    const plan = await planContext(dir, 'build/Dockerfile.prod', dir);
    expect(plan.dockerfile).toBe('build/Dockerfile.prod');
    expect(plan.files).toEqual(['.dockerignore', 'build', 'build/Dockerfile.prod']);
    expect(plan.extraDockerfile).toBeNull();
  });

  it('resolves -f against the working directory', async () => {
    write({ 'ctx/Dockerfile.dev': 'x' });
    const plan = await planContext(join(dir, 'ctx'), 'ctx/Dockerfile.dev', dir);
    expect(plan.dockerfile).toBe('Dockerfile.dev');
  });

  it('sends a Dockerfile from outside the context under a reserved name', async () => {
    write({ 'ctx/a.txt': 'a', 'elsewhere/Dockerfile': 'FROM scratch' });
    const plan = await planContext(join(dir, 'ctx'), join(dir, 'elsewhere/Dockerfile'), dir);
    expect(plan.files).toEqual(['a.txt']);
    expect(plan.dockerfile).toBe('.stratum.Dockerfile');
    expect(plan.extraDockerfile).toEqual({
      source: join(dir, 'elsewhere/Dockerfile'),
      name: '.stratum.Dockerfile',
    });
  });

  it('treats a file whose name starts with ".." as inside the context', async () => {
    write({ '..Dockerfile': 'FROM scratch' });
    const plan = await planContext(dir, join(dir, '..Dockerfile'), dir);
    expect(plan.dockerfile).toBe('..Dockerfile');
    expect(plan.extraDockerfile).toBeNull();
  });

  it('fails clearly when the Dockerfile does not exist', async () => {
    write({ 'a.txt': 'a' });
    await expect(planContext(dir, undefined, dir)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('tarContext', () => {
  async function listTar(stream: NodeJS.ReadableStream): Promise<Map<string, string>> {
    const entries = new Map<string, string>();
    const parser = new Parser({
      onReadEntry: (e: ReadEntry) => {
        const chunks: Buffer[] = [];
        e.on('data', (c: Buffer) => chunks.push(c));
        e.on('end', () => entries.set(e.path, Buffer.concat(chunks).toString()));
      },
    });
    await new Promise<void>((resolve, reject) => {
      parser.on('end', resolve);
      parser.on('error', reject);
      stream.pipe(parser);
    });
    return entries;
  }

  it('tars exactly the planned files (no recursion into ignored directories)', async () => {
    write({ Dockerfile: 'FROM scratch', '.dockerignore': 'd/secret\n', 'd/secret': 's', 'd/ok': 'o' });
    const plan = await planContext(dir, undefined, dir);
    const { stream, cleanup } = await tarContext(dir, plan);
    const entries = await listTar(stream);
    cleanup();
    expect([...entries.keys()].sort()).toEqual(['.dockerignore', 'Dockerfile', 'd/', 'd/ok']);
    expect(entries.get('d/ok')).toBe('o');
  });

  it('appends an outside Dockerfile under its in-context name', async () => {
    write({ 'ctx/a.txt': 'a', 'Dockerfile.out': 'FROM scratch\n' });
    const plan = await planContext(join(dir, 'ctx'), join(dir, 'Dockerfile.out'), dir);
    const { stream, cleanup } = await tarContext(join(dir, 'ctx'), plan);
    const entries = await listTar(stream);
    cleanup();
    expect(entries.get('.stratum.Dockerfile')).toBe('FROM scratch\n');
    expect(entries.get('a.txt')).toBe('a');
  });

  it('is deterministic and keeps long names, symlinks and hard links', async () => {
    const long = `${'d'.repeat(120)}/${'f'.repeat(90)}.txt`;
    write({ Dockerfile: 'FROM scratch', [long]: 'long', 'é.txt': 'utf8' });
    symlinkSync('Dockerfile', join(dir, 'link'));
    linkSync(join(dir, 'é.txt'), join(dir, 'hard'));
    const plan = await planContext(dir, undefined, dir);
    const bytes = async (): Promise<Buffer> => {
      const { stream, cleanup } = await tarContext(dir, plan);
      const chunks: Buffer[] = [];
      for await (const c of stream) {
        chunks.push(c as Buffer);
      }
      cleanup();
      return Buffer.concat(chunks);
    };
    const a = await bytes();
    expect((await bytes()).equals(a)).toBe(true);
    const entries = await listTar(Readable.from([a]));
    expect(entries.get(long)).toBe('long');
    expect(entries.get('hard')).toBe('utf8'); // first name of the inode: the content
    expect(entries.has('é.txt')).toBe(true); // a hard link entry to `hard`
    expect(entries.has('link')).toBe(true);
  });
});
