import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveInRoot } from './root-path';

describe('resolveInRoot', () => {
  let root: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'stratum-root-path-'));
    await mkdir(join(root, 'real/sub'), { recursive: true });
    await mkdir(join(root, 'etc/conf.d'), { recursive: true });
    await symlink('/real', join(root, 'abs')); // absolute: means the container's /real
    await symlink('../etc/conf.d', join(root, 'real/rel')); // relative
    await symlink('/', join(root, 'toroot'));
    await symlink('../../../../../../etc', join(root, 'up')); // tries to climb out
    await symlink('loop2', join(root, 'loop1'));
    await symlink('loop1', join(root, 'loop2'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('follows absolute links as container paths', async () => {
    expect(await resolveInRoot(root, '/abs/sub/file', true)).toBe('/real/sub/file');
  });

  it('follows relative links from where they are', async () => {
    expect(await resolveInRoot(root, '/real/rel/x.conf', true)).toBe('/etc/conf.d/x.conf');
  });

  it('never leaves the root: `..` and `/` stop at it', async () => {
    expect(await resolveInRoot(root, '/up/passwd', true)).toBe('/etc/passwd');
    expect(await resolveInRoot(root, '/toroot/toroot/real', true)).toBe('/real');
    expect(await resolveInRoot(root, '../../../real', true)).toBe('/real');
  });

  it('leaves the last component alone unless asked to follow it', async () => {
    expect(await resolveInRoot(root, '/abs', false)).toBe('/abs');
    expect(await resolveInRoot(root, '/abs', true)).toBe('/real');
  });

  it('takes missing components literally', async () => {
    expect(await resolveInRoot(root, '/abs/new/deeper', true)).toBe('/real/new/deeper');
  });

  it('fails on symlink loops', async () => {
    await expect(resolveInRoot(root, '/loop1/x', true)).rejects.toThrow(/too many levels of symbolic links/);
  });
});
