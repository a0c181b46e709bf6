import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectHostPlatforms, servedPlatforms } from './host-platforms';

describe('detectHostPlatforms', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'binfmt-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const handler = (interp: string, flags: string, enabled = true): string =>
    `${enabled ? 'enabled' : 'disabled'}\ninterpreter ${interp}\nflags: ${flags}\noffset 0\nmagic 7f454c46\nmask ffffffff\n`;

  it('counts enabled handlers with the F flag only, native first', async () => {
    await writeFile(join(dir, 'status'), 'enabled\n');
    await writeFile(join(dir, 'register'), '');
    await writeFile(join(dir, 'qemu-aarch64'), handler('/usr/libexec/qemu-binfmt/aarch64-binfmt-P', 'PF'));
    await writeFile(join(dir, 'qemu-riscv64'), handler('/usr/bin/qemu-riscv64-static', 'OC'));
    await writeFile(join(dir, 'qemu-s390x'), handler('/usr/bin/qemu-s390x-static', 'F', false));
    await writeFile(join(dir, 'qemu-x86_64'), handler('/usr/bin/qemu-x86_64-static', 'F'));
    await writeFile(join(dir, 'python3.11'), handler('/usr/bin/python3.11', ''));
    const host = await detectHostPlatforms('x64', dir);
    expect(host.native).toBe('linux/amd64');
    expect([...host.emulated]).toEqual([['linux/arm64', 'qemu-aarch64']]);
    expect(host.ignored.join('\n')).toMatch(/qemu-riscv64: registered without the F flag/);
    expect(host.ignored.join('\n')).toMatch(/qemu-s390x: disabled/);
    expect(servedPlatforms(host, null)).toEqual(['linux/amd64', 'linux/arm64']);
    expect(servedPlatforms(host, 'linux/arm64')).toEqual(['linux/arm64']);
    expect(() => servedPlatforms(host, 'linux/amd64,linux/riscv64')).toThrow(
      /names linux\/riscv64, which this host cannot run.*qemu-riscv64: registered without the F flag/,
    );
  });

  it('is native only without binfmt_misc (or with it disabled)', async () => {
    const none = await detectHostPlatforms('arm64', join(dir, 'missing'));
    expect(none.native).toBe('linux/arm64');
    expect(none.emulated.size).toBe(0);
    await writeFile(join(dir, 'status'), 'disabled\n');
    await writeFile(join(dir, 'qemu-x86_64'), handler('/usr/bin/qemu-x86_64-static', 'F'));
    expect((await detectHostPlatforms('arm64', dir)).emulated.size).toBe(0);
    await expect(detectHostPlatforms('sparc', dir)).rejects.toThrow(/"sparc"/);
  });
});
