import { readFile } from 'node:fs/promises';
import type { OciSeccomp, OciSeccompArg, OciSeccompRule } from './oci-runtime-spec';
import { RuntimeError } from './runtime-error';

/**
 * Where the allowlist comes from: the Docker-format default profile Debian installs with
 * containers-common (golang-github-containers-common, a dependency of podman, buildah and
 * skopeo; infra/lib.sh installs it). It is the same format as moby's profiles/seccomp/default.json
 * (deny by default, an allowlist, rules conditional on capabilities and architectures).
 */
export const DEFAULT_SECCOMP_PROFILE = '/usr/share/containers/seccomp.json';

/** A rule of a Docker-format profile (moby api/types seccomp.Syscall). */
interface ProfileRule {
  names?: string[];
  name?: string;
  action: string;
  errnoRet?: number;
  args?: OciSeccompArg[] | null;
  includes?: { caps?: string[]; arches?: string[]; minKernel?: string };
  excludes?: { caps?: string[]; arches?: string[] };
}

/** A Docker-format seccomp profile, parsed (https://docs.docker.com/engine/security/seccomp/). */
export interface SeccompProfile {
  readonly defaultAction: string;
  readonly defaultErrnoRet?: number;
  readonly archMap?: { architecture: string; subArchitectures?: string[] }[];
  readonly syscalls: ProfileRule[];
}

/**
 * Syscalls Docker's default profile refuses to a container without CAP_SYS_ADMIN & co.
 * ("Significant syscalls blocked by the default profile",
 * https://docs.docker.com/engine/security/seccomp/), plus the new mount API and io_uring
 * (moby gates the first on CAP_SYS_ADMIN and blocks the second since Docker 25). They are taken
 * out of the allowlist whatever it says, so the result is Docker's profile or stricter: the
 * containers-common list lets `unshare`, `mount`, `keyctl`, `setns` through and leaves them to
 * capabilities. `ptrace` and `process_vm_*` stay allowed (Docker allows them on kernels >= 4.8;
 * the PID namespace hides host processes and CAP_SYS_PTRACE is not granted).
 */
export const BLOCKED_SYSCALLS: readonly string[] = [
  '_sysctl',
  'acct',
  'add_key',
  'bpf',
  'clock_adjtime',
  'clock_adjtime64',
  'clock_settime',
  'clock_settime64',
  'create_module',
  'delete_module',
  'fanotify_init',
  'finit_module',
  'fsconfig',
  'fsmount',
  'fsopen',
  'fspick',
  'get_kernel_syms',
  'init_module',
  'io_uring_enter',
  'io_uring_register',
  'io_uring_setup',
  'ioperm',
  'iopl',
  'kcmp',
  'kexec_file_load',
  'kexec_load',
  'keyctl',
  'lookup_dcookie',
  'mount',
  'mount_setattr',
  'move_mount',
  'name_to_handle_at',
  'nfsservctl',
  'open_by_handle_at',
  'open_tree',
  'perf_event_open',
  'pivot_root',
  'query_module',
  'quotactl',
  'quotactl_fd',
  'reboot',
  'request_key',
  'setns',
  'settimeofday',
  'stime',
  'swapoff',
  'swapon',
  'sysfs',
  'syslog',
  'umount',
  'umount2',
  'unshare',
  'uselib',
  'userfaultfd',
  'ustat',
  'vm86',
  'vm86old',
];

/** clone(2) flags that make new namespaces (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET). */
const CLONE_NAMESPACE_FLAGS = 0x7e020000;
const ENOSYS = 38;
const EPERM = 1;

/** Docker's names for Node's `process.arch`. */
const DOCKER_ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  ia32: 'x86',
  arm: 'arm',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
};
const SECCOMP_ARCH: Record<string, string> = {
  x64: 'SCMP_ARCH_X86_64',
  arm64: 'SCMP_ARCH_AARCH64',
  ia32: 'SCMP_ARCH_X86',
  arm: 'SCMP_ARCH_ARM',
  ppc64: 'SCMP_ARCH_PPC64LE',
  s390x: 'SCMP_ARCH_S390X',
  riscv64: 'SCMP_ARCH_RISCV64',
};

/** Reads and checks a Docker-format profile; RuntimeError OPTIONS_INVALID naming the file otherwise. */
export async function loadSeccompProfile(file = DEFAULT_SECCOMP_PROFILE): Promise<SeccompProfile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new RuntimeError(
      'OPTIONS_INVALID',
      `seccomp profile ${file} cannot be read (${(err as Error).message}); install golang-github-containers-common (infra/lib.sh does) or set SECCOMP_PROFILE`,
    );
  }
  let doc: SeccompProfile;
  try {
    doc = JSON.parse(text) as SeccompProfile;
  } catch {
    throw new RuntimeError('OPTIONS_INVALID', `seccomp profile ${file} is not JSON`);
  }
  if (typeof doc.defaultAction !== 'string' || !Array.isArray(doc.syscalls)) {
    throw new RuntimeError('OPTIONS_INVALID', `seccomp profile ${file} has no defaultAction and syscalls`);
  }
  return doc;
}

function kernelAtLeast(release: string, min: string): boolean {
  const have = release.split(/[.-]/).map(Number);
  const want = min.split('.').map(Number);
  for (let i = 0; i < want.length; i++) {
    const h = have[i] ?? 0;
    const w = want[i] ?? 0;
    if (Number.isNaN(h) || h !== w) {
      return Number.isNaN(h) ? false : h > w;
    }
  }
  return true;
}

/**
 * The OCI `linux.seccomp` of a container with `capabilities` on this architecture: the profile's
 * rules that apply (their `includes`/`excludes` on capabilities, architectures and kernel, as
 * moby's setupSeccomp resolves them), with {@link BLOCKED_SYSCALLS} removed from every
 * unconditional allow, `clone` allowed only without namespace flags and `clone3` answering
 * ENOSYS (so libc falls back to clone, whose flags can be checked) — as Docker does.
 * https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config-linux.md#seccomp
 */
export function seccompFor(
  profile: SeccompProfile,
  capabilities: readonly string[],
  arch: string = process.arch,
  kernelRelease = '',
): OciSeccomp {
  const dockerArch = DOCKER_ARCH[arch] ?? arch;
  const seccompArch = SECCOMP_ARCH[arch];
  const caps = new Set(capabilities);
  const blocked = new Set(BLOCKED_SYSCALLS);
  const syscalls: OciSeccompRule[] = [];
  for (const rule of profile.syscalls) {
    const inc = rule.includes ?? {};
    const exc = rule.excludes ?? {};
    if (inc.arches?.length && !inc.arches.includes(dockerArch)) {
      continue;
    }
    if (inc.caps?.length && !inc.caps.every((c) => caps.has(c))) {
      continue;
    }
    if (inc.minKernel && kernelRelease !== '' && !kernelAtLeast(kernelRelease, inc.minKernel)) {
      continue;
    }
    if (exc.arches?.includes(dockerArch) || exc.caps?.some((c) => caps.has(c))) {
      continue;
    }
    let names = rule.names ?? (rule.name !== undefined ? [rule.name] : []);
    const conditional = (rule.args ?? []).length > 0;
    if (rule.action === 'SCMP_ACT_ALLOW' && !conditional) {
      names = names.filter((n) => !blocked.has(n) && n !== 'clone' && n !== 'clone3');
    }
    if (names.length === 0) {
      continue;
    }
    syscalls.push({
      names,
      action: rule.action,
      ...(rule.errnoRet !== undefined ? { errnoRet: rule.errnoRet } : {}),
      ...(conditional ? { args: rule.args ?? [] } : {}),
    });
  }
  const named = new Set(syscalls.flatMap((r) => r.names));
  syscalls.push(
    // EPERM, as Docker answers them (the default action's ENOSYS would say "no such kernel feature")
    { names: BLOCKED_SYSCALLS.filter((n) => !named.has(n)), action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
    {
      names: ['clone'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
    },
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
  );
  const map = profile.archMap?.find((a) => a.architecture === seccompArch);
  return {
    defaultAction: profile.defaultAction,
    ...(profile.defaultErrnoRet !== undefined ? { defaultErrnoRet: profile.defaultErrnoRet } : {}),
    ...(map !== undefined ? { architectures: [map.architecture, ...(map.subArchitectures ?? [])] } : {}),
    syscalls,
  };
}
