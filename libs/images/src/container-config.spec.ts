import { StratumError } from '@stratum/contracts';
import { ImageConfig } from '@stratum/oci';
import {
  applyCommitChanges,
  commitConfig,
  EMPTY_TAR_DIFF_ID,
  mergeEnv,
  parseCommitChanges,
  runConfig,
} from './container-config';

const D1 = `sha256:${'1'.repeat(64)}` as const;
const D2 = `sha256:${'2'.repeat(64)}` as const;

const image: ImageConfig = {
  architecture: 'amd64',
  os: 'linux',
  config: { Env: ['PATH=/bin', 'A=1'], Entrypoint: ['/entry'], Cmd: ['default'], WorkingDir: '/app' },
  rootfs: { type: 'layers', diff_ids: [D1] },
  history: [{ created_by: 'base' }],
};

describe('runConfig (docker run)', () => {
  it('keeps the entrypoint, replaces Cmd, merges env by key, overrides workdir and user', () => {
    expect(runConfig(image, { cmd: ['x', 'y'], env: ['A=2', 'B=3'], workdir: '/w', user: 'nobody' })).toEqual(
      {
        Entrypoint: ['/entry'],
        Cmd: ['x', 'y'],
        Env: ['PATH=/bin', 'A=2', 'B=3'],
        WorkingDir: '/w',
        User: 'nobody',
      },
    );
  });

  it("falls back to the image's Cmd and refuses when there is nothing to run", () => {
    expect(runConfig(image, { cmd: [], env: [] }).Cmd).toEqual(['default']);
    expect(() => runConfig({ ...image, config: {} }, { cmd: [], env: [] })).toThrow(/no command/);
  });
});

describe('commit changes (docker commit --change)', () => {
  it('refuses instructions a commit cannot apply and unparsable ones', () => {
    expect(() => parseCommitChanges(['RUN echo hi'])).toThrow(/RUN is not allowed/);
    expect(() => parseCommitChanges(['FROM alpine'])).toThrow(/not allowed/);
    expect(() => parseCommitChanges(['NOPE x'])).toThrow(/changes\[0\]/);
    expect(() => parseCommitChanges(['CMD a\nRUN b'])).toThrow(/newlines/);
  });

  it('applies them in order, with expansion against the env', () => {
    const out = applyCommitChanges(
      { Env: ['HOME=/home/me'], Cmd: ['old'], WorkingDir: '/a' },
      parseCommitChanges([
        'ENV DIR=$HOME/data',
        'WORKDIR sub',
        'WORKDIR $DIR',
        'CMD echo hi',
        'ENTRYPOINT ["/bin/app"]',
        'EXPOSE 80 53/udp 8000-8001',
        'LABEL a=b "c d"=e',
        'USER 1000:1000',
        'STOPSIGNAL SIGTERM',
        'VOLUME ["/v1", "/v2"]',
      ]),
    );
    expect(out).toEqual({
      Env: ['HOME=/home/me', 'DIR=/home/me/data'],
      WorkingDir: '/home/me/data',
      Cmd: ['/bin/sh', '-c', 'echo hi'],
      Entrypoint: ['/bin/app'],
      ExposedPorts: { '80/tcp': {}, '53/udp': {}, '8000/tcp': {}, '8001/tcp': {} },
      Labels: { a: 'b', 'c d': 'e' },
      User: '1000:1000',
      StopSignal: 'SIGTERM',
      Volumes: { '/v1': {}, '/v2': {} },
    });
  });

  it('ENTRYPOINT clears an inherited Cmd unless a CMD change came first', () => {
    expect(applyCommitChanges({ Cmd: ['old'] }, parseCommitChanges(['ENTRYPOINT ["e"]'])).Cmd).toBeNull();
    expect(
      applyCommitChanges({ Cmd: ['old'] }, parseCommitChanges(['CMD ["c"]', 'ENTRYPOINT ["e"]'])).Cmd,
    ).toEqual(['c']);
  });
});

describe('commit changes against the Dockerfile limits', () => {
  it('ENV A=$A$A forty times fails at the change that passes maxExpandedWordLength, quickly', () => {
    const changes = parseCommitChanges(['ENV A=x', ...Array.from({ length: 40 }, () => 'ENV A=$A$A')]);
    const t0 = Date.now();
    // changes[k] holds 2^k characters: 2^18 > 128 KiB is changes[18].
    let caught: unknown;
    try {
      applyCommitChanges({}, changes);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(StratumError);
    expect((caught as StratumError).code).toBe('BAD_REQUEST');
    expect((caught as StratumError).message).toMatch(/^changes\[18\]: .*maxExpandedWordLength \(131072\)/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('through commitConfig too, and a base env doubled by LABELs hits the stage budget', () => {
    const big = 'b'.repeat(60 * 1024);
    const labels = parseCommitChanges(Array.from({ length: 200 }, (_, k) => `LABEL l${k}=$B$B`));
    expect(() =>
      commitConfig({
        parent: image,
        container: { Entrypoint: [], Cmd: ['sh'], Env: [`B=${big}`], WorkingDir: '/', User: '' },
        command: ['sh'],
        changes: labels,
        message: '',
        author: '',
        layerAdded: false,
        diffId: null,
        created: '2026-01-01T00:00:00Z',
      }),
    ).toThrow(/changes\[136\]: .*maxSubstitutedLength/);
  });

  it('refuses more changes than maxInstructions', () => {
    expect(() => parseCommitChanges(Array.from({ length: 20_001 }, () => 'ENV A=1'))).toThrow(
      /20001 changes exceed the limit maxInstructions \(20000\)/,
    );
  });
});

describe('commitConfig', () => {
  const container = runConfig(image, { cmd: ['sh', '-c', 'touch /x'], env: ['E=1'] });

  it("starts from the container's config, adds the layer, history and author", () => {
    const out = commitConfig({
      parent: { ...image, author: 'someone else' },
      container,
      command: ['/entry', 'sh', '-c', 'touch /x'],
      changes: [],
      message: 'msg',
      author: 'me',
      layerAdded: true,
      diffId: D2,
      created: '2026-01-01T00:00:00.000Z',
    });
    expect(out.rootfs.diff_ids).toEqual([D1, D2]);
    expect(out.author).toBe('me');
    expect(out.created).toBe('2026-01-01T00:00:00.000Z');
    expect(out.config).toEqual({
      Env: ['PATH=/bin', 'A=1', 'E=1'],
      Entrypoint: ['/entry'],
      Cmd: ['sh', '-c', 'touch /x'],
      WorkingDir: '/app',
    });
    expect(out.history).toEqual([
      { created_by: 'base' },
      {
        created: '2026-01-01T00:00:00.000Z',
        created_by: '/entry sh -c touch /x',
        author: 'me',
        comment: 'msg',
      },
    ]);
  });

  it('marks an unchanged container as an empty layer and drops an unset author', () => {
    const out = commitConfig({
      parent: { ...image, author: 'someone else' },
      container,
      command: ['true'],
      changes: [],
      message: '',
      author: '',
      layerAdded: false,
      diffId: EMPTY_TAR_DIFF_ID,
      created: '2026-01-01T00:00:00.000Z',
    });
    expect(out.rootfs.diff_ids).toEqual([D1]);
    expect(out.author).toBeUndefined();
    expect(out.history?.[1]).toEqual({
      created: '2026-01-01T00:00:00.000Z',
      created_by: 'true',
      empty_layer: true,
    });
  });
});

describe('mergeEnv', () => {
  it('replaces by key and keeps order', () => {
    expect(mergeEnv(['A=1', 'B=2'], ['B=3', 'C=4', 'A=5'])).toEqual(['A=5', 'B=3', 'C=4']);
  });
});
