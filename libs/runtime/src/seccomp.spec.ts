import { BLOCKED_SYSCALLS, SeccompProfile, seccompFor } from './seccomp';

// A small Docker-format profile with each kind of rule moby's setupSeccomp resolves.
const profile: SeccompProfile = {
  defaultAction: 'SCMP_ACT_ERRNO',
  defaultErrnoRet: 38,
  archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] }],
  syscalls: [
    { names: ['read', 'write', 'unshare', 'keyctl', 'clone', 'clone3', 'mount'], action: 'SCMP_ACT_ALLOW' },
    {
      names: ['personality'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: 0, valueTwo: 0, op: 'SCMP_CMP_EQ' }],
    },
    { names: ['arch_prctl'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64', 'x32'] } },
    { names: ['s390_runtime_instr'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['s390x'] } },
    { names: ['chroot'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_CHROOT'] } },
    { names: ['chroot'], action: 'SCMP_ACT_ERRNO', errnoRet: 1, excludes: { caps: ['CAP_SYS_CHROOT'] } },
    { names: ['bpf'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } },
    { names: ['new_call'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '7.1' } },
  ],
};

describe('seccompFor', () => {
  const allowed = (caps: string[]): string[] =>
    seccompFor(profile, caps, 'x64', '6.18.4')
      .syscalls.filter((r) => r.action === 'SCMP_ACT_ALLOW' && r.args === undefined)
      .flatMap((r) => r.names)
      .sort();

  it("resolves rules for the capabilities, architecture and kernel as moby does, minus Docker's blocked set", () => {
    expect(allowed(['CAP_SYS_CHROOT'])).toEqual(['arch_prctl', 'chroot', 'read', 'write']);
    const withoutChroot = seccompFor(profile, [], 'x64', '6.18.4');
    expect(withoutChroot.syscalls).toContainEqual({
      names: ['chroot'],
      action: 'SCMP_ACT_ERRNO',
      errnoRet: 1,
    });
    expect(allowed([])).toEqual(['arch_prctl', 'read', 'write']);
  });

  it('refuses the blocked syscalls with EPERM, clone only with namespace flags, clone3 with ENOSYS', () => {
    const s = seccompFor(profile, ['CAP_SYS_ADMIN'], 'x64', '6.18.4');
    expect(s).toMatchObject({
      defaultAction: 'SCMP_ACT_ERRNO',
      defaultErrnoRet: 38,
      architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    });
    const eperm = s.syscalls.findLast((r) => r.action === 'SCMP_ACT_ERRNO' && r.errnoRet === 1)!;
    for (const n of [
      'unshare',
      'keyctl',
      'mount',
      'setns',
      'add_key',
      'request_key',
      'bpf',
      'io_uring_setup',
    ]) {
      expect(BLOCKED_SYSCALLS).toContain(n);
      expect(eperm.names).toContain(n);
    }
    expect(allowed(['CAP_SYS_ADMIN'])).not.toContain('bpf');
    expect(s.syscalls).toContainEqual({
      names: ['clone'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
    });
    expect(s.syscalls).toContainEqual({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
    // an argument-conditional allow is kept as it is
    expect(s.syscalls).toContainEqual(profile.syscalls[1]);
  });
});
