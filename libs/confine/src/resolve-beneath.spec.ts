import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { containerPath, readFileBeneath, resolveBeneath, resolveInRoot } from './resolve-beneath';

describe('resolveInRoot', () => {
  let outer: string;
  let root: string;

  beforeAll(async () => {
    outer = await realpath(await mkdtemp(join(tmpdir(), 'stratum-confine-')));
    root = join(outer, 'root');
    await writeFile(join(outer, 'host-secret'), 'HOST SECRET\n');
    await mkdir(join(root, 'real/sub'), { recursive: true });
    await mkdir(join(root, 'etc/conf.d'), { recursive: true });
    await writeFile(join(root, 'etc/conf.d/x.conf'), 'inside\n');
    await writeFile(join(root, 'real/file'), 'a file\n');
    await symlink('/real', join(root, 'abs')); // absolute: the container's /real
    await symlink('../etc/conf.d', join(root, 'real/rel')); // relative, stays inside
    await symlink('/', join(root, 'toroot'));
    await symlink('../../../../../../etc', join(root, 'up')); // climbs out
    await symlink(outer, join(root, 'outer')); // absolute host path
    await symlink('../host-secret', join(root, 'secret')); // one level above the root
    await symlink('loop2', join(root, 'loop1'));
    await symlink('loop1', join(root, 'loop2'));
    await symlink('real/sub', join(root, 'dirlink'));
    await symlink('file', join(root, 'real/filelink'));
  });
  afterAll(async () => {
    await rm(outer, { recursive: true, force: true });
  });

  describe('in-root (a container view)', () => {
    it('follows absolute links as paths below the root', async () => {
      expect(await resolveInRoot(root, '/abs/sub/file')).toBe('/real/sub/file');
    });

    it('follows relative links from where they are', async () => {
      expect(await resolveInRoot(root, '/real/rel/x.conf')).toBe('/etc/conf.d/x.conf');
    });

    it('never leaves the root: `..` and `/` stop at it', async () => {
      expect(await resolveInRoot(root, '/up/passwd')).toBe('/etc/passwd');
      expect(await resolveInRoot(root, '/toroot/toroot/real')).toBe('/real');
      expect(await resolveInRoot(root, '../../../real')).toBe('/real');
      expect(await resolveInRoot(root, '/outer/host-secret')).toBe(`${outer}/host-secret`);
      expect(await resolveBeneath(root, '/secret')).toBe(join(root, 'host-secret'));
    });

    it('`..` after a link means the parent of its target, as the kernel does', async () => {
      expect(await resolveInRoot(root, '/dirlink/..')).toBe('/real');
      expect(await resolveInRoot(root, '/abs/rel/../conf.d')).toBe('/etc/conf.d');
    });

    it('leaves the last component alone unless asked to follow it', async () => {
      expect(await resolveInRoot(root, '/abs', { followFinal: false })).toBe('/abs');
      expect(await resolveInRoot(root, '/abs')).toBe('/real');
      expect(await resolveInRoot(root, '/abs/', { followFinal: false })).toBe('/abs');
    });

    it('takes missing components literally, and what is below a file', async () => {
      expect(await resolveInRoot(root, '/abs/new/deeper')).toBe('/real/new/deeper');
      expect(await resolveInRoot(root, '/real/file/x')).toBe('/real/file/x');
      expect(await resolveInRoot(root, '/real/missing/../sub')).toBe('/real/sub');
    });

    it('fails on symlink loops with a typed error', async () => {
      await expect(resolveInRoot(root, '/loop1/x')).rejects.toMatchObject({
        code: 'PATH_INVALID',
        message: expect.stringMatching(/too many levels of symbolic links/),
      });
    });

    it('refuses a NUL byte', async () => {
      await expect(resolveInRoot(root, 'a\0b')).rejects.toMatchObject({ code: 'PATH_INVALID' });
    });
  });

  describe('refuse-escape (files of a build context)', () => {
    const opts = { symlinks: 'refuse-escape' as const, what: 'Dockerfile path' };

    it('follows links that stay inside', async () => {
      expect(await resolveInRoot(root, 'real/rel/x.conf', opts)).toBe('/etc/conf.d/x.conf');
      expect(await resolveInRoot(root, 'dirlink/../filelink', opts)).toBe('/real/file');
    });

    it.each([
      ['an absolute link', '/abs/sub'],
      ['a link climbing out', 'up/passwd'],
      ['a link one level above the root', 'secret'],
      ['a link to the host path', 'outer/host-secret'],
      ['a `..` in the path above the root', '../root/real'],
      ['a `..` climbing out after a link', 'dirlink/../../..'],
    ])('refuses %s, naming the input only', async (_label, p) => {
      const err = (await resolveInRoot(root, p, opts).catch((e: unknown) => e)) as Error & { code: string };
      expect(err.code).toBe('PATH_ESCAPE');
      expect(err.message).toContain('Dockerfile path');
      expect(err.message).not.toContain(outer);
    });
  });

  describe('refuse', () => {
    it('refuses any link it would follow, and keeps a final one when not following', async () => {
      await expect(resolveInRoot(root, 'real/rel/x.conf', { symlinks: 'refuse' })).rejects.toMatchObject({
        code: 'PATH_ESCAPE',
      });
      expect(await resolveInRoot(root, 'real/rel', { symlinks: 'refuse', followFinal: false })).toBe(
        '/real/rel',
      );
      expect(await resolveInRoot(root, 'real/sub', { symlinks: 'refuse' })).toBe('/real/sub');
    });
  });

  it('containerPath is lexical and clamps at the root', () => {
    expect(containerPath('/r', '../../etc/passwd')).toBe('/r/etc/passwd');
    expect(containerPath('/r', 'a/./b/../c')).toBe('/r/a/c');
    expect(containerPath('/r', '/')).toBe('/r');
  });

  describe('readFileBeneath', () => {
    it('reads a file through links that stay inside', async () => {
      expect(await readFileBeneath(root, 'abs/rel/x.conf', 100)).toBe('inside\n');
      expect(await readFileBeneath(root, 'real/filelink', 100, { symlinks: 'refuse-escape' })).toBe(
        'a file\n',
      );
    });

    it('never reads the host file a link points at', async () => {
      // in-root: the same name below the root, which does not exist
      expect(await readFileBeneath(root, 'secret', 100)).toBeNull();
      expect(await readFileBeneath(root, 'outer/host-secret', 100)).toBeNull();
      await expect(readFileBeneath(root, 'secret', 100, { symlinks: 'refuse-escape' })).rejects.toMatchObject(
        {
          code: 'PATH_ESCAPE',
        },
      );
    });

    it('answers null for missing files and what is not a regular file', async () => {
      expect(await readFileBeneath(root, 'nope', 100)).toBeNull();
      expect(await readFileBeneath(root, 'real/sub', 100)).toBeNull();
      expect(await readFileBeneath(root, 'real/file/below', 100)).toBeNull();
    });

    it('does not hang on a FIFO', async () => {
      const fifo = join(root, 'fifo');
      const made = spawnSync('mkfifo', [fifo]);
      expect(made.status).toBe(0);
      try {
        expect(await readFileBeneath(root, 'fifo', 100)).toBeNull();
      } finally {
        await rm(fifo, { force: true });
      }
    });

    it('refuses a file over the limit', async () => {
      await expect(readFileBeneath(root, 'real/file', 3, { what: '.dockerignore' })).rejects.toMatchObject({
        code: 'FILE_TOO_LARGE',
        message: expect.stringContaining('limit of 3 bytes'),
      });
      expect(await readFileBeneath(root, 'real/file', 7)).toBe('a file\n');
    });
  });
});

describe('resolveBeneath (property)', () => {
  let outer: string;

  beforeAll(async () => {
    outer = await realpath(await mkdtemp(join(tmpdir(), 'stratum-confine-prop-')));
  });
  afterAll(async () => {
    await rm(outer, { recursive: true, force: true });
  });

  const name = fc.constantFrom('a', 'b', 'c', '..', '.');
  const rel = fc.array(name, { minLength: 0, maxLength: 6 }).map((p) => p.join('/'));
  const target = fc.oneof(
    rel,
    rel.map((p) => `/${p}`),
    fc.constantFrom('/', '..', '../..', '../../..', '/etc', tmpdir()),
  );
  // A tree: directories and links at random places among a few names.
  const tree = fc.array(
    fc.record({
      at: fc.array(fc.constantFrom('a', 'b', 'c'), { minLength: 1, maxLength: 3 }),
      link: fc.option(target),
    }),
    { maxLength: 8 },
  );

  it('never answers a path outside the root, and follows the policy', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(tree, rel, fc.boolean(), async (entries, p, absolute) => {
        const root = join(outer, `t${n++}`, 'root');
        await mkdir(root, { recursive: true });
        for (const e of entries) {
          const at = join(root, ...e.at);
          await mkdir(join(at, '..'), { recursive: true }).catch(() => undefined);
          if (e.link === null) {
            await mkdir(at, { recursive: true }).catch(() => undefined);
          } else {
            await symlink(e.link, at).catch(() => undefined);
          }
        }
        const userPath = absolute ? `/${p}` : p;
        const inRoot = await resolveBeneath(root, userPath).catch((err: { code?: string }) => err);
        if (typeof inRoot === 'string') {
          expect(inRoot === root || inRoot.startsWith(`${root}/`)).toBe(true);
          // The existing part of the answer is real: no link left in it to take us elsewhere.
          const real = await realpath(inRoot).catch(() => null);
          if (real !== null) {
            expect(real === root || real.startsWith(`${root}/`)).toBe(true);
          }
        } else {
          expect(inRoot.code).toBe('PATH_INVALID'); // only a loop
        }
        const strict = await resolveBeneath(root, userPath, { symlinks: 'refuse-escape' }).catch(
          (err: { code?: string }) => err,
        );
        if (typeof strict === 'string') {
          // Whatever refuse-escape accepts, the container view agrees with.
          expect(strict).toBe(inRoot);
        } else {
          expect(['PATH_ESCAPE', 'PATH_INVALID']).toContain(strict.code);
        }
        await rm(join(root, '..'), { recursive: true, force: true });
      }),
      { numRuns: 150 },
    );
  }, 30_000);
});
