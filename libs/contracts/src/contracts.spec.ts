import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  BuildState,
  ERROR_STATUS,
  isErrorCode,
  isTerminalBuildState,
  JobName,
  PLATFORM_QUEUE_JOBS,
  platformQueueName,
  QUEUE_JOBS,
  QueueName,
  settledAll,
  StratumError,
  TERMINAL_BUILD_STATES,
  WORKER_QUEUE_JOBS,
  workerQueueName,
} from './index';

const repoRoot = resolve(__dirname, '../../..');

/** Every non-test TypeScript source of apps, libs and workers. */
function sources(): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (name === 'node_modules' || name === 'dist') {
        continue;
      }
      if (statSync(p).isDirectory()) {
        walk(p);
      } else if (name.endsWith('.ts') && !/\.(spec|test|int\.test|e2e\.test)\.ts$/.test(name)) {
        out.push({ path: p, text: readFileSync(p, 'utf8') });
      }
    }
  };
  for (const top of ['apps', 'libs', 'workers']) {
    walk(join(repoRoot, top));
  }
  return out;
}

describe('build states', () => {
  it('terminal states are exactly succeeded, failed and cancelled', () => {
    expect([...TERMINAL_BUILD_STATES].sort()).toEqual(['cancelled', 'failed', 'succeeded']);
    expect(isTerminalBuildState(BuildState.Succeeded)).toBe(true);
    expect(isTerminalBuildState(BuildState.Failed)).toBe(true);
    expect(isTerminalBuildState(BuildState.Cancelled)).toBe(true);
    expect(isTerminalBuildState(BuildState.Queued)).toBe(false);
    expect(isTerminalBuildState(BuildState.Running)).toBe(false);
  });

  it('every state is classified, and the values are unique', () => {
    const values = Object.values(BuildState);
    expect(new Set(values).size).toBe(values.length);
    for (const s of values) {
      expect(typeof isTerminalBuildState(s)).toBe('boolean');
    }
    for (const s of TERMINAL_BUILD_STATES) {
      expect(values).toContain(s);
    }
  });
});

describe('ERROR_STATUS', () => {
  it('maps every code to an HTTP error status', () => {
    for (const [code, status] of Object.entries(ERROR_STATUS)) {
      expect({ code, ok: Number.isInteger(status) && status >= 400 && status <= 599 }).toEqual({
        code,
        ok: true,
      });
    }
  });

  it('isErrorCode accepts known codes only (not prototype keys or other types)', () => {
    expect(isErrorCode('BUILD_UNKNOWN')).toBe(true);
    expect(isErrorCode('CONTEXT_TOO_LARGE')).toBe(true);
    expect(isErrorCode('NOPE')).toBe(false);
    expect(isErrorCode('toString')).toBe(false);
    expect(isErrorCode('__proto__')).toBe(false);
    expect(isErrorCode(404)).toBe(false);
    expect(isErrorCode(undefined)).toBe(false);
  });

  it('the build API codes have the statuses the API documents', () => {
    expect(ERROR_STATUS.CONTEXT_MISSING).toBe(400);
    expect(ERROR_STATUS.CONTEXT_INVALID).toBe(400);
    expect(ERROR_STATUS.DOCKERFILE_MISSING).toBe(400);
    expect(ERROR_STATUS.CONTEXT_TOO_LARGE).toBe(413);
    expect(ERROR_STATUS.BUILD_UNKNOWN).toBe(404);
    expect(ERROR_STATUS.BUILD_FINISHED).toBe(409);
  });

  it('covers every code a StratumError is raised with in the sources', () => {
    const used = new Map<string, string>();
    for (const { path, text } of sources()) {
      // new StratumError('CODE', ...) and subclasses' super('CODE', ...)
      for (const m of text.matchAll(/(?:new StratumError|super)\(\s*'([A-Z][A-Z0-9_]*)'/g)) {
        used.set(m[1], path);
      }
    }
    expect(used.size).toBeGreaterThan(5);
    const missing = [...used].filter(([code]) => !isErrorCode(code)).map(([c, p]) => `${c} (${p})`);
    expect(missing).toEqual([]);
  });

  it('StratumError keeps code, message and detail', () => {
    const e = new StratumError('BUILD_UNKNOWN', 'no build', { id: 'x' });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('StratumError');
    expect(e.code).toBe('BUILD_UNKNOWN');
    expect(e.message).toBe('no build');
    expect(e.detail).toEqual({ id: 'x' });
  });
});

describe('QUEUE_JOBS', () => {
  it('has an entry for every queue and nothing else', () => {
    expect(Object.keys(QUEUE_JOBS).sort()).toEqual(Object.values(QueueName).sort());
  });

  it('routes every job name to exactly one queue (shared or per-worker)', () => {
    const all = [
      ...Object.values(QUEUE_JOBS),
      ...Object.values(WORKER_QUEUE_JOBS),
      ...Object.values(PLATFORM_QUEUE_JOBS),
    ].flat();
    expect([...all].sort()).toEqual(Object.values(JobName).sort());
    expect(new Set(all).size).toBe(all.length);
  });

  it('names a worker queue `<queue>.<workerId>` and refuses ids that cannot name a BullMQ queue', () => {
    expect(workerQueueName(QueueName.Commit, 'build-host-1.example')).toBe('commit.build-host-1.example');
    for (const bad of ['a:b', '', '-x', 'a b', 'x'.repeat(129)]) {
      expect(() => workerQueueName(QueueName.Commit, bad)).toThrow(/cannot name a queue/);
    }
  });

  it('names a platform queue `<queue>.<os>-<arch>[-<variant>]` and refuses other strings', () => {
    expect(platformQueueName(QueueName.Build, 'linux/arm/v7')).toBe('build.linux-arm-v7');
    for (const bad of ['linux', 'linux/ARM64', 'a:b/c', 'linux/arm64/v8/x']) {
      expect(() => platformQueueName(QueueName.Build, bad)).toThrow(/cannot name a queue/);
    }
  });

  it('has unique queue and job name values', () => {
    expect(new Set(Object.values(QueueName)).size).toBe(Object.keys(QueueName).length);
    expect(new Set(Object.values(JobName)).size).toBe(Object.keys(JobName).length);
  });
});

describe('settledAll', () => {
  it('gives every value in order, or the first failure only once every promise has settled', async () => {
    await expect(settledAll([Promise.resolve(1), 'two', Promise.resolve(3)] as const)).resolves.toEqual([
      1,
      'two',
      3,
    ]);
    let slowDone = false;
    const slow = new Promise<void>((resolve) =>
      setTimeout(() => {
        slowDone = true;
        resolve();
      }, 30),
    );
    await expect(
      settledAll([Promise.reject(new Error('first')), slow, Promise.reject(new Error('second'))]),
    ).rejects.toThrow('first');
    expect(slowDone).toBe(true);
  });
});
