import {
  ConfigError,
  defaultRuntimePath,
  loadConfig,
  lostWorkerTimings,
  unreachableByClients,
} from './config';

describe('loadConfig', () => {
  const minimal = { REDIS_URL: 'redis://127.0.0.1:6390' };

  it('applies defaults with only REDIS_URL set', () => {
    const c = loadConfig({ ...minimal, DATA_DIR: '/var/lib/stratum' });
    expect(c.storage).toEqual({ kind: 'fs', root: '/var/lib/stratum/store' });
    expect(c.api.port).toBe(8080);
    expect(c.worker.concurrency).toBe(2);
    expect(c.runtimePath).toBe(defaultRuntimePath());
    expect(loadConfig({ ...minimal, RUNTIME: '/usr/sbin/runc' }).runtimePath).toBe('/usr/sbin/runc');
    expect(c.worker.scratchDir.startsWith('/var/lib/stratum/worker/')).toBe(true);
  });

  it('git sources: https and ssh by default, file only when listed, unknown transports refused', () => {
    expect(loadConfig(minimal).addGit).toEqual({
      schemes: ['https', 'ssh'],
      maxBytes: 2 * 1024 * 1024 * 1024,
      timeoutSeconds: 300,
      sshKnownHostsFile: null,
    });
    expect(
      loadConfig({ ...minimal, ADD_GIT_SSH_KNOWN_HOSTS: '/etc/stratum/known_hosts' }).addGit
        .sshKnownHostsFile,
    ).toBe('/etc/stratum/known_hosts');
    expect(loadConfig({ ...minimal, ADD_GIT_SCHEMES: 'https, file' }).addGit.schemes).toEqual([
      'https',
      'file',
    ]);
    expect(() => loadConfig({ ...minimal, ADD_GIT_SCHEMES: 'https,ftp' })).toThrow(/ADD_GIT_SCHEMES/);
  });

  it('listens on loopback until registry and API auth are both on; refuses an open address without them', () => {
    const auth = {
      REGISTRY_AUTH: 'token',
      API_AUTH: 'true',
      AUTH_SECRET: 'x'.repeat(32),
      API_TOKENS: 'ci:0123456789abcdef',
    };
    expect(loadConfig(minimal).api.host).toBe('127.0.0.1');
    expect(loadConfig({ ...minimal, REGISTRY_AUTH: 'token', AUTH_SECRET: 'x'.repeat(32) }).api.host).toBe(
      '127.0.0.1',
    );
    expect(loadConfig({ ...minimal, ...auth }).api.host).toBe('0.0.0.0');
    expect(loadConfig({ ...minimal, ...auth, API_HOST: '10.1.2.3' }).api.host).toBe('10.1.2.3');
    for (const host of ['127.0.0.1', '127.9.9.9', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) {
      expect(loadConfig({ ...minimal, API_HOST: host }).api.host).toBe(host);
    }
    for (const host of ['0.0.0.0', '::', '192.168.1.5', 'example.com', '128.0.0.1']) {
      expect(() => loadConfig({ ...minimal, API_HOST: host })).toThrow(
        new RegExp(
          `API_HOST: ${host.replace(/\./g, '\\.')} would accept unauthenticated builds.*REGISTRY_AUTH=token and API_AUTH=true`,
        ),
      );
    }
    expect(() =>
      loadConfig({ ...minimal, API_HOST: '0.0.0.0', REGISTRY_AUTH: 'token', AUTH_SECRET: 'x'.repeat(32) }),
    ).toThrow(/set API_AUTH=true \(/);
    expect(
      loadConfig({ ...minimal, API_HOST: '0.0.0.0', ALLOW_UNAUTHENTICATED_NETWORK: 'true' }).api.host,
    ).toBe('0.0.0.0');
    expect(loadConfig({ ...minimal, ALLOW_UNAUTHENTICATED_NETWORK: 'true' }).api.host).toBe('0.0.0.0');
  });

  it('reads ACCESS_RULES as subject:pattern=actions and refuses a bad entry naming it', () => {
    expect(loadConfig(minimal).auth.accessRules).toEqual([]);
    expect(
      loadConfig({ ...minimal, ACCESS_RULES: 'alice:team/*=pull+push, token:ci:ci/*=push,*:shared/*=pull' })
        .auth.accessRules,
    ).toEqual([
      { subject: 'alice', pattern: 'team/*', actions: ['pull', 'push'] },
      { subject: 'token:ci', pattern: 'ci/*', actions: ['push'] },
      { subject: '*', pattern: 'shared/*', actions: ['pull'] },
    ]);
    for (const bad of ['alice=pull', 'alice:team/*=write', 'alice:Team/*=pull', ':x=pull', 'alice:x=']) {
      expect(() => loadConfig({ ...minimal, ACCESS_RULES: bad })).toThrow(`ACCESS_RULES: "${bad}"`);
    }
  });

  it('reads IMMUTABLE_TAGS as repository-pattern:tag-pattern and refuses a bad entry naming it', () => {
    expect(loadConfig(minimal).immutableTags).toEqual([]);
    expect(loadConfig({ ...minimal, IMMUTABLE_TAGS: 'team/*:v*,*:release-*' }).immutableTags).toEqual([
      { repository: 'team/*', tag: 'v*' },
      { repository: '*', tag: 'release-*' },
    ]);
    for (const bad of ['v*', 'team/*:', ':v*', 'Team:v1', 'team:v 1']) {
      expect(() => loadConfig({ ...minimal, IMMUTABLE_TAGS: bad })).toThrow(`IMMUTABLE_TAGS: "${bad}"`);
    }
  });

  it('reads REPOSITORY_QUOTAS as pattern=size (SI and IEC units) and refuses a bad entry naming it', () => {
    expect(loadConfig(minimal).repositoryQuotas).toEqual([]);
    expect(
      loadConfig({ ...minimal, REPOSITORY_QUOTAS: 'team-a/*=10GiB, team-b/app=500MB,*=1024' })
        .repositoryQuotas,
    ).toEqual([
      { pattern: 'team-a/*', limitBytes: 10 * 2 ** 30 },
      { pattern: 'team-b/app', limitBytes: 500_000_000 },
      { pattern: '*', limitBytes: 1024 },
    ]);
    for (const bad of ['team=10XB', 'Team/*=1GiB', 'team/*', '=1GiB', 'team=']) {
      expect(() => loadConfig({ ...minimal, REPOSITORY_QUOTAS: bad })).toThrow(`REPOSITORY_QUOTAS: "${bad}"`);
    }
    expect(() => loadConfig({ ...minimal, REPOSITORY_QUOTAS: 'a/*=1MB,a/*=2MB' })).toThrow(/given twice/);
  });

  it('reads TRUST_PROXY as a hop count or a list of addresses, unset as null', () => {
    expect(loadConfig(minimal).api.trustProxy).toBeNull();
    expect(loadConfig({ ...minimal, TRUST_PROXY: '1' }).api.trustProxy).toBe(1);
    expect(loadConfig({ ...minimal, TRUST_PROXY: 'loopback,10.0.0.0/8' }).api.trustProxy).toBe(
      'loopback,10.0.0.0/8',
    );
    expect(() => loadConfig({ ...minimal, TRUST_PROXY: 'a b' })).toThrow(/TRUST_PROXY/);
  });

  it('RUN steps default to the sandboxed network; the operator can make none the default or turn it off', () => {
    expect(loadConfig(minimal)).toMatchObject({ stepNetworkDefault: 'sandbox', allowSandboxNetwork: true });
    expect(loadConfig({ ...minimal, STEP_NETWORK_DEFAULT: 'none' }).stepNetworkDefault).toBe('none');
    expect(loadConfig({ ...minimal, ALLOW_SANDBOX_NETWORK: 'false' })).toMatchObject({
      stepNetworkDefault: 'none',
      allowSandboxNetwork: false,
    });
    expect(() =>
      loadConfig({ ...minimal, STEP_NETWORK_DEFAULT: 'sandbox', ALLOW_SANDBOX_NETWORK: 'false' }),
    ).toThrow(/STEP_NETWORK_DEFAULT/);
    expect(() => loadConfig({ ...minimal, STEP_NETWORK_DEFAULT: 'host' })).toThrow(/sandbox" or "none/);
  });

  it('USERNS_REMAP: auto by default, off, or a uid range; anything else refused naming the forms', () => {
    expect(loadConfig(minimal).usernsRemap).toBe('auto');
    expect(loadConfig({ ...minimal, USERNS_REMAP: 'off' }).usernsRemap).toBe('off');
    expect(loadConfig({ ...minimal, USERNS_REMAP: '200000:65536' }).usernsRemap).toBe('200000:65536');
    expect(loadConfig({ ...minimal, USERNS_REMAP: '200000:300000:65536' }).usernsRemap).toBe(
      '200000:300000:65536',
    );
    expect(() => loadConfig({ ...minimal, USERNS_REMAP: 'yes' })).toThrow(
      /USERNS_REMAP must be auto, off, or a uid range like 100000:65536/,
    );
  });

  it('refuses a missing REDIS_URL with a message naming it', () => {
    expect(() => loadConfig({})).toThrow(ConfigError);
    expect(() => loadConfig({})).toThrow(/REDIS_URL/);
  });

  it('refuses a bad port and a bad storage kind, listing both problems', () => {
    try {
      loadConfig({ ...minimal, API_PORT: '70000', STORAGE: 'ftp' });
      throw new Error('expected ConfigError');
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      const problems = (e as ConfigError).problems.join('\n');
      expect(problems).toMatch(/API_PORT/);
      expect(problems).toMatch(/STORAGE/);
    }
  });

  it('requires S3 settings only when STORAGE=s3', () => {
    expect(() => loadConfig({ ...minimal, STORAGE: 's3' })).toThrow(
      /S3_ENDPOINT.*required because STORAGE=s3/,
    );
    const c = loadConfig({
      ...minimal,
      STORAGE: 's3',
      S3_ENDPOINT: 'http://127.0.0.1:9000',
      S3_ACCESS_KEY: 'k',
      S3_SECRET_KEY: 's',
      S3_BUCKET: 'stratum-blobs',
    });
    expect(c.storage).toMatchObject({ kind: 's3', bucket: 'stratum-blobs', region: 'us-east-1' });
  });

  it('S3 redirects: auto turns them on only for an endpoint clients elsewhere can reach; on and off force', () => {
    const s3 = (endpoint: string, extra: Record<string, string> = {}) =>
      loadConfig({
        ...minimal,
        STORAGE: 's3',
        S3_ENDPOINT: endpoint,
        S3_ACCESS_KEY: 'k',
        S3_SECRET_KEY: 's',
        S3_BUCKET: 'stratum-blobs',
        ...extra,
      }).storage as { redirectEndpoint: string | null; redirectReason: string };
    // auto (the default): public names and addresses are redirected to.
    for (const e of [
      'https://s3.example.com',
      'http://minio.example.org:9000',
      'http://203.0.113.7:9000',
      'http://[2001:db8::1]:9000',
    ]) {
      expect(s3(e).redirectEndpoint).toBe(e);
    }
    // ...loopback, unspecified, private, link-local addresses and cluster-internal names are not.
    for (const e of [
      'http://127.0.0.1:9000',
      'http://localhost:9000',
      'http://0.0.0.0:9000',
      'http://10.1.2.3:9000',
      'http://172.20.0.5:9000',
      'http://192.168.1.10:9000',
      'http://100.64.0.1:9000',
      'http://169.254.1.1:9000',
      'http://[::1]:9000',
      'http://[fd00::5]:9000',
      'http://[fe80::1]:9000',
      'http://minio:9000',
      'http://minio.stratum.svc:9000',
      'http://minio.stratum.svc.cluster.local:9000',
      'http://s3.internal:9000',
    ]) {
      const c = s3(e);
      expect({ e, to: c.redirectEndpoint }).toEqual({ e, to: null });
      expect(c.redirectReason).toMatch(
        /^off \(S3_REDIRECT=auto: S3_ENDPOINT .* is (a|an) .*set S3_REDIRECT_ENDPOINT/,
      );
    }
    // S3_REDIRECT_ENDPOINT names the address clients reach: used unless S3_REDIRECT=off.
    expect(s3('http://minio:9000', { S3_REDIRECT_ENDPOINT: 'https://s3.example.com' }).redirectEndpoint).toBe(
      'https://s3.example.com',
    );
    expect(
      s3('http://minio:9000', { S3_REDIRECT_ENDPOINT: 'https://s3.example.com', S3_REDIRECT: 'off' })
        .redirectEndpoint,
    ).toBeNull();
    expect(s3('https://s3.example.com', { S3_REDIRECT: 'off' }).redirectEndpoint).toBeNull();
    expect(s3('http://127.0.0.1:9000', { S3_REDIRECT: 'on' }).redirectEndpoint).toBe('http://127.0.0.1:9000');
    expect(() => s3('http://127.0.0.1:9000', { S3_REDIRECT: 'maybe' })).toThrow(/S3_REDIRECT/);
    expect(unreachableByClients('172.32.0.1')).toBeNull();
    expect(unreachableByClients('::ffff:10.0.0.1')).toBe('a private address');
  });

  it('treats empty variables as unset', () => {
    expect(loadConfig({ ...minimal, API_PORT: '' }).api.port).toBe(8080);
  });

  it('coerces numeric settings and rejects non-numbers', () => {
    expect(loadConfig({ ...minimal, WORKER_CONCURRENCY: '4' }).worker.concurrency).toBe(4);
    expect(() => loadConfig({ ...minimal, MAX_CONTEXT_BYTES: 'lots' })).toThrow(/MAX_CONTEXT_BYTES/);
  });

  it('WORKER_ID names one directory: `..`, `/` and the like are refused', () => {
    expect(loadConfig({ ...minimal, WORKER_ID: 'host-1.example' }).worker.scratchDir).toMatch(
      /\/worker\/host-1\.example$/,
    );
    for (const bad of ['..', '../..', 'a/b', '.hidden']) {
      expect(() => loadConfig({ ...minimal, WORKER_ID: bad })).toThrow(/WORKER_ID/);
    }
  });

  it('MAX_ADD_UNPACKED_BYTES defaults to 8 GiB and is a positive number', () => {
    expect(loadConfig(minimal).maxAddUnpackedBytes).toBe(8 * 1024 * 1024 * 1024);
    expect(loadConfig({ ...minimal, MAX_ADD_UNPACKED_BYTES: '1024' }).maxAddUnpackedBytes).toBe(1024);
    expect(() => loadConfig({ ...minimal, MAX_ADD_UNPACKED_BYTES: '0' })).toThrow(/MAX_ADD_UNPACKED_BYTES/);
  });

  it('derives the takeover timings from WORKER_LOST_MS (8 s by default)', () => {
    expect(loadConfig(minimal).worker).toMatchObject({
      lostMs: 8_000,
      lockDurationMs: 5_600,
      lockRenewMs: 1_867,
      stalledIntervalMs: 2_000,
      heartbeatMs: 1_000,
      livenessTtlMs: 3_000,
    });
    expect(loadConfig({ ...minimal, WORKER_LOST_MS: '20000' }).worker).toMatchObject({
      lostMs: 20_000,
      lockDurationMs: 14_000,
      stalledIntervalMs: 5_000,
      heartbeatMs: 2_500,
      livenessTtlMs: 7_500,
    });
    expect(() => loadConfig({ ...minimal, WORKER_LOST_MS: '1000' })).toThrow(/WORKER_LOST_MS/);
    expect(() => loadConfig({ ...minimal, WORKER_LOST_MS: 'soon' })).toThrow(/WORKER_LOST_MS/);
  });

  it('keeps the derived timings within the bound for every WORKER_LOST_MS', () => {
    for (const lost of [2_000, 2_001, 3_333, 8_000, 9_999, 60_000, 600_000]) {
      const t = lostWorkerTimings(lost)!;
      // worst-case detection: lock expiry (a full lock after the last renewal) + one stalled interval
      expect(t.lockDurationMs + t.stalledIntervalMs).toBeLessThanOrEqual(lost);
      // a dead worker's liveness record lapses before its jobs can be taken over (the earliest:
      // one lock after a renewal that was due just when it died)
      expect(t.livenessTtlMs).toBeLessThan(t.lockDurationMs - t.lockRenewMs);
      // a live worker renews several times per lock and heartbeats several times per record
      expect(t.lockRenewMs * 3).toBeLessThanOrEqual(t.lockDurationMs + 1);
      expect(t.heartbeatMs * 3).toBe(t.livenessTtlMs);
    }
  });

  it('takes WORKER_LOCK_DURATION_MS / WORKER_STALLED_INTERVAL_MS as overrides whose sum fits WORKER_LOST_MS', () => {
    const c = loadConfig({ ...minimal, WORKER_LOCK_DURATION_MS: '4000', WORKER_STALLED_INTERVAL_MS: '1000' });
    expect(c.worker).toMatchObject({
      lostMs: 8_000,
      lockDurationMs: 4000,
      lockRenewMs: 1333,
      stalledIntervalMs: 1000,
    });
    expect(loadConfig({ ...minimal, WORKER_STALLED_INTERVAL_MS: '2400' }).worker).toMatchObject({
      lockDurationMs: 5_600,
      stalledIntervalMs: 2_400,
    });
    expect(() => loadConfig({ ...minimal, WORKER_LOCK_DURATION_MS: '10' })).toThrow(
      /WORKER_LOCK_DURATION_MS/,
    );
    // the former defaults (8 s + 2 s) exceed the 8 s bound: refused, naming the way out
    expect(() =>
      loadConfig({ ...minimal, WORKER_LOCK_DURATION_MS: '8000', WORKER_STALLED_INTERVAL_MS: '2000' }),
    ).toThrow(/\(8000 \+ 2000 ms\) exceed WORKER_LOST_MS \(8000 ms\).*raise WORKER_LOST_MS/);
    expect(
      loadConfig({
        ...minimal,
        WORKER_LOST_MS: '10000',
        WORKER_LOCK_DURATION_MS: '8000',
        WORKER_STALLED_INTERVAL_MS: '2000',
      }).worker,
    ).toMatchObject({ lostMs: 10_000, lockDurationMs: 8000, stalledIntervalMs: 2000, heartbeatMs: 1250 });
  });

  it('pulls unqualified bases from Docker Hub by default, without mirrors', () => {
    const c = loadConfig(minimal);
    expect(c.registryClients.defaultRegistry).toBe('docker.io');
    expect(c.registryClients.pullMirrors).toEqual([]);
    expect(loadConfig({ ...minimal, DEFAULT_REGISTRY: 'none' }).registryClients.defaultRegistry).toBeNull();
    expect(
      loadConfig({ ...minimal, DEFAULT_REGISTRY: 'index.docker.io' }).registryClients.defaultRegistry,
    ).toBe('docker.io');
    expect(() => loadConfig({ ...minimal, DEFAULT_REGISTRY: 'https://docker.io' })).toThrow(
      /DEFAULT_REGISTRY/,
    );
  });

  it('reads PULL_MIRRORS per registry, in order, apart from the REGISTRY_MIRRORS it serves', () => {
    const c = loadConfig({
      ...minimal,
      REGISTRY_MIRRORS: 'hub=https://registry-1.docker.io',
      PULL_MIRRORS:
        'docker.io=http://127.0.0.1:5001,https://mirror.example/,quay.io=https://q.example:8443,registry-1.docker.io=https://third.example',
    });
    expect(c.registryClients.pullMirrors).toEqual([
      {
        registry: 'docker.io',
        urls: ['http://127.0.0.1:5001', 'https://mirror.example', 'https://third.example'],
      },
      { registry: 'quay.io', urls: ['https://q.example:8443'] },
    ]);
    expect(c.registryClients.mirrors.map((m) => m.prefix)).toEqual(['hub']);
  });

  it.each([
    ['http://127.0.0.1:5001', 'a mirror before any registry'],
    ['docker.io=ftp://m.example', 'not http(s)'],
    ['docker.io=https://m.example/v2/', 'a path'],
    ['docker.io=https://u:p@m.example', 'credentials in the URL'],
    ['docker.io=not a url', 'not a URL'],
    ['a b=https://m.example', 'a bad registry name'],
  ])('refuses PULL_MIRRORS=%s (%s), naming the entry', (value) => {
    expect(() => loadConfig({ ...minimal, PULL_MIRRORS: value })).toThrow(
      new RegExp(`PULL_MIRRORS: "${value.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"`),
    );
  });

  it('reads Redis Sentinel settings, and refuses a malformed list', () => {
    expect(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6390' }).redisSentinel).toBeNull();
    const c = loadConfig({
      REDIS_URL: 'redis://:pw@x:1/2',
      REDIS_SENTINELS: 'a.example:26379,10.0.0.2:26380',
    });
    expect(c.redisSentinel).toEqual({
      sentinels: [
        { host: 'a.example', port: 26379 },
        { host: '10.0.0.2', port: 26380 },
      ],
      name: 'mymaster',
    });
    expect(() => loadConfig({ REDIS_URL: 'redis://x:1', REDIS_SENTINELS: 'no-port' })).toThrow(
      /REDIS_SENTINELS/,
    );
  });
});
