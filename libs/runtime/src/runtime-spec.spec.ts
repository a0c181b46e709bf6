import { detectMemoryCgroup } from './cgroups';
import { DEFAULT_CAPABILITIES, DEFAULT_PATH, buildEnv, generateRuntimeSpec } from './runtime-spec';

describe('generateRuntimeSpec', () => {
  const base = { rootfs: '/var/lib/stratum/mnt/abc', args: ['/bin/sh', '-c', 'make'] };

  it('produces Docker-like defaults', () => {
    const spec = generateRuntimeSpec(base);
    expect(spec.ociVersion).toBe('1.0.2');
    expect(spec.root).toEqual({ path: base.rootfs, readonly: false });
    expect(spec.process).toMatchObject({
      terminal: false,
      args: ['/bin/sh', '-c', 'make'],
      env: [`PATH=${DEFAULT_PATH}`],
      cwd: '/',
      user: { uid: 0, gid: 0, additionalGids: [] },
      noNewPrivileges: false,
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1048576, hard: 1048576 }],
    });
    expect(spec.hostname).toBe('stratum');
    const caps = spec.process.capabilities;
    expect(caps?.bounding).toHaveLength(14);
    expect(caps?.effective).toEqual(caps?.bounding);
    expect(caps?.permitted).toEqual(caps?.bounding);
    expect(caps?.inheritable).toBeUndefined();
    expect(caps?.bounding).toEqual(expect.arrayContaining(['CAP_CHOWN', 'CAP_NET_RAW', 'CAP_AUDIT_WRITE']));
    expect(caps?.bounding).not.toContain('CAP_SYS_ADMIN');
    expect(spec.linux.namespaces.map((n) => n.type).sort()).toEqual([
      'cgroup',
      'ipc',
      'mount',
      'network',
      'pid',
      'uts',
    ]);
    expect(spec.linux.maskedPaths).toEqual(expect.arrayContaining(['/proc/kcore', '/sys/firmware']));
    expect(spec.linux.readonlyPaths).toEqual(expect.arrayContaining(['/proc/sys', '/proc/sysrq-trigger']));
    expect(spec.linux.resources).toEqual({ devices: [{ allow: false, access: 'rwm' }] });
    expect(spec.linux.cgroupsPath).toBeUndefined();
  });

  it('extra mounts keep their order: binds (ro or rw) and tmpfs with a size limit', () => {
    const mounts = generateRuntimeSpec({
      ...base,
      mounts: [
        { source: '/host/ctx', destination: '/src/../src', readonly: true },
        { type: 'tmpfs', destination: '/src/tmp', sizeBytes: 1048576 },
        { type: 'tmpfs', destination: '/t2' },
        { source: '/host/cache', destination: '/root/.cache' },
      ],
    }).mounts.slice(-4);
    expect(mounts).toEqual([
      { destination: '/src', type: 'bind', source: '/host/ctx', options: ['rbind', 'rprivate', 'ro'] },
      {
        destination: '/src/tmp',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'nodev', 'size=1048576'],
      },
      { destination: '/t2', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev'] },
      {
        destination: '/root/.cache',
        type: 'bind',
        source: '/host/cache',
        options: ['rbind', 'rprivate', 'rw'],
      },
    ]);
    expect(() => generateRuntimeSpec({ ...base, mounts: [{ type: 'tmpfs', destination: 't' }] })).toThrow(
      /absolute/,
    );
    expect(() =>
      generateRuntimeSpec({ ...base, mounts: [{ type: 'tmpfs', destination: '/t', sizeBytes: -1 }] }),
    ).toThrow(/tmpfs size/);
  });

  it('mounts proc, a tmpfs /dev, devpts, shm, mqueue and a read-only sysfs', () => {
    const mounts = generateRuntimeSpec(base).mounts;
    const byDest = Object.fromEntries(mounts.map((m) => [m.destination, m]));
    expect(byDest['/proc']?.type).toBe('proc');
    expect(byDest['/dev']?.type).toBe('tmpfs');
    expect(byDest['/dev/pts']?.type).toBe('devpts');
    expect(byDest['/dev/shm']?.type).toBe('tmpfs');
    expect(byDest['/dev/mqueue']?.type).toBe('mqueue');
    expect(byDest['/sys']).toMatchObject({ type: 'sysfs', options: expect.arrayContaining(['ro']) });
    // /dev must come before what is mounted inside it
    expect(mounts.findIndex((m) => m.destination === '/dev')).toBeLessThan(
      mounts.findIndex((m) => m.destination === '/dev/pts'),
    );
    expect(byDest['/etc/resolv.conf']).toBeUndefined();
  });

  it("network 'host' drops the network namespace and binds resolv.conf and hosts", () => {
    const spec = generateRuntimeSpec({
      ...base,
      network: 'host',
      hostNetworkFiles: { hosts: '/run/stratum/hosts' },
    });
    expect(spec.linux.namespaces.map((n) => n.type)).not.toContain('network');
    expect(spec.mounts).toEqual(
      expect.arrayContaining([
        {
          destination: '/etc/resolv.conf',
          type: 'bind',
          source: '/etc/resolv.conf',
          options: ['rbind', 'rprivate', 'ro'],
        },
        {
          destination: '/etc/hosts',
          type: 'bind',
          source: '/run/stratum/hosts',
          options: ['rbind', 'rprivate', 'ro'],
        },
      ]),
    );
  });

  it("network 'sandbox' joins the given namespace, binds its files read-only and drops CAP_NET_RAW", () => {
    const spec = generateRuntimeSpec({
      ...base,
      network: 'sandbox',
      netnsPath: '/proc/4242/ns/net',
      networkFiles: { resolvConf: '/b/resolv.conf', hosts: '/b/hosts' },
    });
    expect(spec.linux.namespaces).toContainEqual({ type: 'network', path: '/proc/4242/ns/net' });
    const byDest = Object.fromEntries(spec.mounts.map((m) => [m.destination, m]));
    expect(byDest['/etc/resolv.conf']).toEqual({
      destination: '/etc/resolv.conf',
      type: 'bind',
      source: '/b/resolv.conf',
      options: ['rbind', 'rprivate', 'ro'],
    });
    expect(byDest['/etc/hosts']?.source).toBe('/b/hosts');
    // AF_PACKET frames would bypass the namespace's netfilter rules
    expect(spec.process.capabilities?.bounding).not.toContain('CAP_NET_RAW');
    expect(spec.process.capabilities?.effective).not.toContain('CAP_NET_RAW');
    expect(spec.process.capabilities?.bounding).not.toContain('CAP_NET_ADMIN');
    expect(spec.linux.sysctl).toEqual({ 'net.ipv4.ping_group_range': '0 2147483647' });
    expect(() => generateRuntimeSpec({ ...base, network: 'sandbox' })).toThrow(/netnsPath/);
    expect(() => generateRuntimeSpec({ ...base, network: 'sandbox', netnsPath: 'rel/ns' })).toThrow(
      /netnsPath must be an absolute path/,
    );
  });

  it("network 'none' keeps CAP_NET_RAW and binds only the files it is given", () => {
    const spec = generateRuntimeSpec({ ...base, networkFiles: { hosts: '/b/hosts' } });
    expect(spec.linux.namespaces).toContainEqual({ type: 'network' });
    expect(spec.process.capabilities?.bounding).toContain('CAP_NET_RAW');
    expect(spec.mounts.map((m) => m.destination)).toContain('/etc/hosts');
    expect(spec.mounts.map((m) => m.destination)).not.toContain('/etc/resolv.conf');
    expect(spec.linux.sysctl).toBeUndefined();
  });

  it('userns: a new user namespace with one mapping, no sysctl it cannot write, and a bound sysfs when given', () => {
    const userns = { uid: 100000, gid: 200000, count: 65536 };
    const spec = generateRuntimeSpec({
      ...base,
      userns,
      network: 'sandbox',
      netnsPath: '/proc/42/ns/net',
      sysfsSource: '/run/b/sys',
    });
    expect(spec.linux.namespaces).toContainEqual({ type: 'user' });
    expect(spec.linux.uidMappings).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
    expect(spec.linux.gidMappings).toEqual([{ containerID: 0, hostID: 200000, size: 65536 }]);
    expect(spec.linux.sysctl).toBeUndefined();
    expect(spec.mounts.filter((m) => m.destination === '/sys')).toEqual([
      {
        destination: '/sys',
        type: 'bind',
        source: '/run/b/sys',
        options: ['rbind', 'rprivate', 'nosuid', 'noexec', 'nodev', 'ro'],
      },
    ]);
    const plain = generateRuntimeSpec({ ...base, network: 'sandbox', netnsPath: '/proc/42/ns/net' });
    expect(plain.linux.namespaces.some((n) => n.type === 'user')).toBe(false);
    expect(plain.linux.uidMappings).toBeUndefined();
    expect(plain.linux.sysctl).toEqual({ 'net.ipv4.ping_group_range': '0 2147483647' });
    expect(() => generateRuntimeSpec({ ...base, userns: { uid: -1, gid: 1, count: 1 } })).toThrow(
      /userns.uid/,
    );
    expect(() => generateRuntimeSpec({ ...base, userns: { uid: 1, gid: 1, count: 0 } })).toThrow(
      /userns.count/,
    );
  });

  it('adds bind mounts last, read-only when asked', () => {
    const spec = generateRuntimeSpec({
      ...base,
      mounts: [
        { source: '/cache/go', destination: '/root/go//pkg/' },
        { source: '/run/secrets/x', destination: '/run/secrets/x', readonly: true },
      ],
    });
    expect(spec.mounts.slice(-2)).toEqual([
      {
        destination: '/root/go/pkg/',
        type: 'bind',
        source: '/cache/go',
        options: ['rbind', 'rprivate', 'rw'],
      },
      {
        destination: '/run/secrets/x',
        type: 'bind',
        source: '/run/secrets/x',
        options: ['rbind', 'rprivate', 'ro'],
      },
    ]);
  });

  it('applies user, env, cwd, limits, hostname and flags', () => {
    const spec = generateRuntimeSpec({
      ...base,
      user: { uid: 1000, gid: 1000, additionalGids: [10] },
      env: { PATH: '/opt/bin', FOO: 'a=b' },
      cwd: '/src/./app',
      hostname: 'builder',
      memoryBytes: 512 * 1024 * 1024,
      pidsLimit: 256,
      cpus: 1.5,
      nofile: { soft: 1024, hard: 4096 },
      noNewPrivileges: true,
      capabilities: ['chown', 'CAP_KILL'],
      cgroupsPath: '/stratum/abc',
    });
    expect(spec.process.user).toEqual({ uid: 1000, gid: 1000, umask: 0o022, additionalGids: [10] });
    expect(spec.process.env).toEqual(['PATH=/opt/bin', 'FOO=a=b']);
    expect(spec.process.cwd).toBe('/src/app');
    expect(spec.hostname).toBe('builder');
    expect(spec.linux.resources).toMatchObject({
      memory: { limit: 536870912 },
      pids: { limit: 256 },
      cpu: { quota: 150000, period: 100000 },
    });
    expect(spec.linux.resources?.memory?.swap).toBeUndefined();
    expect(spec.process.rlimits).toEqual([{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 }]);
    expect(spec.process.noNewPrivileges).toBe(true);
    expect(spec.process.capabilities?.bounding).toEqual(['CAP_CHOWN', 'CAP_KILL']);
    expect(spec.linux.cgroupsPath).toBe('/stratum/abc');
  });

  it('is serialisable as config.json and does not share arrays with the defaults', () => {
    const spec = generateRuntimeSpec(base);
    spec.process.capabilities?.bounding?.push('CAP_SYS_ADMIN');
    expect(DEFAULT_CAPABILITIES).not.toContain('CAP_SYS_ADMIN');
    expect(JSON.parse(JSON.stringify(spec))).toEqual(spec);
  });

  it.each([
    [{ rootfs: 'relative/root' }, /rootfs/],
    [{ args: [] }, /args/],
    [{ cwd: 'src' }, /cwd/],
    [{ memoryBytes: 0 }, /memoryBytes/],
    [{ pidsLimit: 1.5 }, /pidsLimit/],
    [{ cpus: -1 }, /cpus/],
    [{ user: { uid: -1, gid: 0 } }, /uid/],
    [{ nofile: { soft: 10, hard: 5 } }, /nofile/],
    [{ mounts: [{ source: 'rel', destination: '/x' }] }, /mount source/],
    [{ mounts: [{ source: '/x', destination: 'x' }] }, /mount destination/],
    [{ env: ['NOEQUALS'] }, /KEY=VALUE/],
  ])('rejects invalid options %j', (override, message) => {
    expect(() => generateRuntimeSpec({ ...base, ...override })).toThrow(message);
    try {
      generateRuntimeSpec({ ...base, ...override });
    } catch (err) {
      expect(err).toMatchObject({ reason: 'OPTIONS_INVALID', code: 'BAD_REQUEST' });
    }
  });
});

describe('buildEnv', () => {
  it('keeps order and adds PATH only when missing', () => {
    expect(buildEnv(['A=1', 'PATH=/x'])).toEqual(['A=1', 'PATH=/x']);
    expect(buildEnv(['A=1'])).toEqual([`PATH=${DEFAULT_PATH}`, 'A=1']);
    expect(buildEnv(undefined)).toEqual([`PATH=${DEFAULT_PATH}`]);
  });
});

describe('detectMemoryCgroup', () => {
  const v1 = [
    '35 24 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755',
    '40 35 0:35 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,memory',
    '41 35 0:36 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw',
  ].join('\n');
  const v2 =
    '35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate';

  it('recognises v1 (hybrid) and v2 layouts', async () => {
    await expect(detectMemoryCgroup(v1)).resolves.toEqual({
      version: 1,
      memoryMount: '/sys/fs/cgroup/memory',
    });
    await expect(detectMemoryCgroup(v2)).resolves.toEqual({ version: 2, root: '/sys/fs/cgroup' });
    await expect(detectMemoryCgroup('')).resolves.toBeNull();
  });
});
