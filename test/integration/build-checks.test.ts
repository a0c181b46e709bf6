// The build checks a build makes while it runs, on a real engine (overlayfs, the registry's
// stores): InvalidBaseImagePlatform when a FROM image is for another platform (a warning in the
// log; under `# check=error=true` the build fails at the FROM line), and the experimental
// CopyIgnoredFile, which needs the context's .dockerignore (asked for with
// `# check=experimental=CopyIgnoredFile`). Messages as BuildKit's linter writes them.
// https://docs.docker.com/reference/build-checks/invalid-base-image-platform/
// https://docs.docker.com/reference/build-checks/copy-ignored-file/
import { BuildEngine, isUserBuildError } from '@stratum/engine';
import { FsBlobStore } from '@stratum/storage';
import {
  buildWithEngine,
  EngineBuildOptions,
  EngineBuildResult,
  EngineTestBed,
  startEngineTestBed,
} from '@stratum/testing';

jest.setTimeout(120_000);

let bed: EngineTestBed;
let blobs: FsBlobStore;
let engine: BuildEngine;

beforeAll(async () => {
  bed = await startEngineTestBed('build-checks');
  ({ blobs } = bed);
  engine = bed.engine();
});

afterAll(async () => {
  const mounts = bed?.mounts('overlay');
  await bed?.stop();
  expect(mounts).toEqual([]);
});

const build = (
  files: Record<string, string | Buffer>,
  opts: EngineBuildOptions = {},
): Promise<EngineBuildResult> => buildWithEngine(engine, blobs, files, opts);

it('InvalidBaseImagePlatform: a base for another platform warns; with error=true the build fails at its FROM', async () => {
  // An arm64 image (no RUN: nothing has to execute for arm64 here).
  await build(
    { Dockerfile: 'FROM --platform=linux/arm64 scratch AS build_arm64\nCOPY f /f\n', f: 'x\n' },
    { tags: ['checks/arm:1'] },
  );
  const warned = await build({ Dockerfile: 'FROM checks/arm:1\nCOPY f /g\n', f: 'y\n' });
  expect(warned.logs).toContain(
    'InvalidBaseImagePlatform: Base image checks/arm:1 was pulled with platform "linux/arm64", expected "linux/amd64" for current build (line 1)',
  );
  const skipped = await build({
    Dockerfile: '# check=skip=InvalidBaseImagePlatform\nFROM checks/arm:1\nCOPY f /g\n',
    f: 'y\n',
  });
  expect(skipped.logs).not.toContain('InvalidBaseImagePlatform');
  let err: unknown;
  try {
    await build({ Dockerfile: '# check=error=true\nFROM checks/arm:1\nCOPY f /g\n', f: 'y\n' });
  } catch (e) {
    err = e;
  }
  expect(isUserBuildError(err)).toBe(true);
  expect((err as Error).message).toContain('lint violation found for rules: InvalidBaseImagePlatform');
  expect((err as { line?: number }).line).toBe(2);
});

it('CopyIgnoredFile: a COPY source the .dockerignore excludes, only when the experimental rule is asked for', async () => {
  const files = {
    '.dockerignore': 'docs\n!docs/keep.md\n',
    'docs/keep.md': 'kept\n',
    'docs/draft.md': 'left out\n',
    'app.txt': 'app\n',
  };
  const body = 'FROM scratch\nCOPY docs /docs\nCOPY app.txt /\n';
  const asked = await build({ ...files, Dockerfile: `# check=experimental=CopyIgnoredFile\n${body}` });
  expect(asked.logs).toContain(
    'CopyIgnoredFile: Attempting to Copy file "docs" that is excluded by .dockerignore (line 3)',
  );
  expect(asked.logs).not.toContain('"app.txt"');
  const plain = await build({ ...files, Dockerfile: body });
  expect(plain.logs).not.toContain('CopyIgnoredFile');
});
