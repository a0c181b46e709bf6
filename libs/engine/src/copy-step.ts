import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, open, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { checkFileName, containerPath, resolveInRoot } from '@stratum/confine';
import { AddInstruction, CopyInstruction, createPathMatcher, splitParentsSource } from '@stratum/dockerfile';
import { ContainerFs } from '@stratum/images';
import { applyLayer, detectCompression } from '@stratum/layers';
import { resolveUser } from '@stratum/runtime';
import { stableJson, stepCacheKey } from './build-cache';
import { BuildError } from './build-errors';
import {
  copyIntoContainer,
  ensureContainerDir,
  ExcludeFilter,
  makeParentDirs,
  matchSources,
  SourceEntry,
} from './file-copy';
import { isGitSource } from '@stratum/git';
import { checkoutBuildGitSource, resolveBuildGitSource } from './git-checkout';
import { fetchRemote, isRemoteSource, parseChecksum, remoteFileName } from './remote-source';
import { hashSources } from './source-hash';
import { PreparedStep, StepHost, StepInput } from './step-host';

/**
 * COPY and ADD: where their files come from (the build context, another stage or image
 * with --from, heredocs, ADD's URLs and local archives), what keys them (the content read,
 * never the files' host paths), and the copy into the container.
 */
export async function prepareCopyStep(
  host: StepHost,
  input: StepInput<CopyInstruction | AddInstruction>,
): Promise<PreparedStep> {
  const { state, instr, instruction, workdir } = input;
  const opts: { -readonly [K in keyof CopyOptions]: CopyOptions[K] } = {
    ...(instr.exclude.length > 0 ? { exclude: createPathMatcher(instr.exclude) } : {}),
    parents: instr.kind === 'COPY' && instr.parents,
  };
  // COPY/ADD --link: the layer is made on an empty filesystem, so it does not depend on the
  // layers below and is keyed without them: a rebuild on a changed base reuses it (same
  // digest). A --chown is resolved against the base first (its /etc/passwd and /etc/group);
  // the ids it gives, not the base, key the step.
  const link = instr.link;
  if (link && instr.chown !== undefined) {
    const base = await host.mountState(
      `${host.data.buildId.slice(0, 8)}-chown-${randomBytes(4).toString('hex')}`,
      state,
    );
    try {
      opts.owner = await chownOwner(base.root, instr);
    } finally {
      await base.release();
    }
  }
  const parent = link ? 'link' : input.parent;
  const target = link ? { ...state, layers: [] } : state;
  const linked = (prepared: PreparedStep): PreparedStep =>
    link
      ? {
          ...prepared,
          chainKey: stepCacheKey({
            parent: input.parent,
            instruction: 'link',
            inputs: { layer: prepared.key },
          }),
        }
      : prepared;
  if (instr.inlineSources.length > 0 && instr.sources.length > 0) {
    throw new BuildError(`${instr.kind}: mixing heredoc and file sources is not supported`, instr.startLine);
  }
  const createdBy = `${instr.kind} ${[...instr.sources, ...instr.inlineSources.map((s) => s.path)].join(' ')} ${instr.dest}`;
  const epoch = host.epoch;
  const base = { workdir, epoch, ...(opts.owner !== undefined ? { owner: opts.owner } : {}) };
  // COPY --from: the source stage's (or image's) key stands for every file it could read.
  if (instr.kind === 'COPY' && instr.from !== undefined) {
    const fromState = await host.fromState(instr.from, instr.startLine);
    const key = stepCacheKey({ parent, instruction, inputs: { ...base, from: fromState.cacheKey } });
    return linked({
      key,
      metadata: null,
      createdBy,
      run: () =>
        host.withContainer(target, async (fs) => {
          const from = await host.mountState(`${fs.id}-from`, fromState);
          try {
            const sources = await findSources(from.root, instr, opts);
            await copyInto(fs, instr, from.root, sources, workdir, opts);
          } finally {
            await from.release();
          }
        }),
    });
  }
  if (instr.inlineSources.length > 0) {
    // Heredoc sources: their text is part of the instruction, hence of the key.
    const key = stepCacheKey({ parent, instruction, inputs: base });
    return linked({
      key,
      metadata: null,
      createdBy,
      run: () =>
        host.withContainer(target, async (fs) => {
          const root = join(fs.dir, 'inline');
          await mkdir(root, { recursive: true });
          for (const s of instr.inlineSources) {
            // `COPY <<..` must not write over the container's own dir: one file name or an error.
            const name = checkFileName(posix.basename(s.path), 'heredoc name');
            await writeFile(join(root, name), s.data, { mode: 0o644 });
          }
          const sources = await matchSources(
            root,
            instr.inlineSources.map((s) => posix.basename(s.path)),
            instr.startLine,
            instr.kind,
          );
          await copyInto(fs, instr, root, sources, workdir);
        }),
    });
  }
  // ADD <git url>: keyed by the commit its ref resolves to (add-git below).
  if (instr.kind === 'ADD' && instr.sources.some((src) => isGitSource(src))) {
    return linked(await prepareAddGit(host, { ...input, instr }, parent, target, createdBy, opts));
  }
  // Sources from the context (and, for ADD, URLs): keyed by the content of what is read.
  const remote: { url: string; checksum?: string }[] = [];
  const local: string[] = [];
  for (const src of instr.sources) {
    if (instr.kind === 'ADD' && isRemoteSource(src)) {
      remote.push({
        url: src,
        ...(instr.checksum !== undefined ? { checksum: parseChecksum(instr.checksum, instr.startLine) } : {}),
      });
    } else {
      local.push(src);
    }
  }
  if (instr.kind === 'ADD' && instr.checksum !== undefined && local.length > 0) {
    throw new BuildError('ADD --checksum can only be used with HTTP(S) sources', instr.startLine);
  }
  if (remote.length > 0 && remote.length + local.length > 1 && !instr.dest.endsWith('/')) {
    throw new BuildError(
      'When using ADD with more than one source file, the destination must be a directory and end with a /',
      instr.startLine,
    );
  }
  // What the sources hash to depends only on the context blob, its ignore file (chosen by
  // the Dockerfile's path) and the patterns: memoized, a cached step needs no extraction.
  const memoKey = `sources:${createHash('sha256')
    .update(
      stableJson({
        v: 1,
        ctx: host.data.contextDigest,
        dockerfile: host.data.dockerfile,
        kind: instr.kind,
        local,
        // what is read changes with these (defaults left out: older memos stay valid)
        ...(instr.exclude.length > 0 ? { exclude: instr.exclude } : {}),
        ...(opts.parents ? { parents: true } : {}),
      }),
    )
    .digest('hex')}`;
  let sources: SourceEntry[] | null = null;
  const localSources = async (): Promise<SourceEntry[]> => {
    if (sources === null) {
      if (local.length > 0) {
        await host.context.materialize();
      }
      sources = await findSources(host.context.dir, { ...instr, sources: local }, opts);
    }
    return sources;
  };
  let sourcesDigest = local.length === 0 ? null : ((await host.engine.cacheIndex.getMemo?.(memoKey)) ?? null);
  if (sourcesDigest === null) {
    sourcesDigest = await hashSources(await localSources(), opts.exclude, host.context.knownDigest);
    if (local.length > 0) {
      await host.engine.cacheIndex.putMemo?.(memoKey, sourcesDigest);
    }
  }
  const remoteInputs: { url: string; digest: string }[] = [];
  const fetched: SourceEntry[] = [];
  const fetchAll = async (): Promise<void> => {
    for (const r of remote) {
      const f = await fetchRemote(r.url, join(host.jobDir, 'remote'), {
        ...(r.checksum !== undefined ? { checksum: r.checksum } : {}),
        line: instr.startLine,
        signal: host.ctx.signal,
      });
      fetched.push({ rel: posix.basename(f.rel), host: f.path, stat: await lstat(f.path) });
      remoteInputs.push({ url: r.url, digest: f.digest });
    }
  };
  if (remote.every((r) => r.checksum !== undefined)) {
    // With --checksum the content is known without downloading: a hit needs no network.
    for (const r of remote) {
      remoteFileName(r.url, instr.startLine);
      remoteInputs.push({ url: r.url, digest: r.checksum as string });
    }
  } else {
    await fetchAll();
  }
  const key = stepCacheKey({
    parent,
    instruction,
    inputs: { ...base, sources: sourcesDigest, remote: remoteInputs },
  });
  return linked({
    key,
    metadata: null,
    createdBy,
    run: () =>
      host.withContainer(target, async (fs) => {
        if (remote.length > 0 && fetched.length === 0) {
          await fetchAll();
        }
        const matched = await localSources();
        let toCopy = matched;
        if (instr.kind === 'ADD' && instr.unpack !== false) {
          toCopy = [];
          const limit = host.options.maxAddUnpackedBytes;
          let left = limit;
          for (const s of matched) {
            if (await isLocalArchive(s.host)) {
              const dest = posix.isAbsolute(instr.dest) ? instr.dest : posix.join(workdir, instr.dest);
              const destDir = containerPath(fs.merged, await resolveInRoot(fs.merged, dest));
              await mkdir(destDir, { recursive: true });
              // A local archive from the build context is a plain archive, as Docker's ADD
              // untars it: `.wh.*` names are files, not whiteouts; no device nodes.
              const applied = await applyLayer(createReadStream(s.host), destDir, {
                devices: 'reject',
                kind: 'plain',
                ...(left !== undefined ? { maxBytes: left } : {}),
              }).catch((err: unknown) => {
                if ((err as { cause?: { code?: unknown } }).cause?.code === 'TAR_TOO_LARGE') {
                  throw new BuildError(
                    `ADD ${s.rel}: the archive unpacks to more than MAX_ADD_UNPACKED_BYTES (${limit} bytes${matched.length > 1 ? ' for all archives of this ADD' : ''})`,
                    instr.startLine,
                  );
                }
                throw err;
              });
              if (left !== undefined) {
                left = Math.max(0, left - applied.bytes);
              }
            } else {
              toCopy.push(s);
            }
          }
        }
        if (toCopy.length > 0) {
          await copyInto(fs, instr, host.context.dir, toCopy, workdir, opts);
        }
        for (const f of fetched) {
          // ADD --unpack=true: a remote archive is unpacked as a local one is (BuildKit's
          // dockerfile 1.17 semantics); without it a URL is always copied as the file it is.
          if (instr.kind === 'ADD' && instr.unpack === true && (await isLocalArchive(f.host))) {
            await unpackArchive(fs, instr, f, workdir, host.options.maxAddUnpackedBytes);
            continue;
          }
          await copyInto(fs, instr, posix.dirname(f.host), [f], workdir);
        }
      }),
  });
}

/** `--chown` resolved against the users and groups of the filesystem at `root`. */
async function chownOwner(
  root: string,
  instr: CopyInstruction | AddInstruction,
): Promise<{ uid: number; gid: number }> {
  try {
    const u = await resolveUser(root, instr.chown ?? '');
    return { uid: u.uid, gid: u.gid };
  } catch (err) {
    throw new BuildError(`${instr.kind} --chown=${instr.chown}: ${(err as Error).message}`, instr.startLine);
  }
}

interface CopyOptions {
  readonly exclude?: ExcludeFilter;
  /** --chown resolved before the copy (--link: against the base, the copy has none below it). */
  readonly owner?: { uid: number; gid: number };
  /** COPY --parents: each match keeps its path below its pivot (`a/./b` keeps `b`). */
  readonly parents: boolean;
}

/**
 * The sources of `instr` in `root`. With --parents each source is matched below its pivot
 * (the part before `/./`, else `root`) and keeps its path from there, as BuildKit copies the
 * pivot with the rest as an include pattern; --exclude then applies to that path too.
 */
async function findSources(
  root: string,
  instr: CopyInstruction | AddInstruction,
  opts: CopyOptions,
): Promise<SourceEntry[]> {
  if (!opts.parents) {
    return matchSources(root, instr.sources, instr.startLine, instr.kind);
  }
  const out: SourceEntry[] = [];
  for (const src of instr.sources) {
    const { root: pivot, pattern } = splitParentsSource(src);
    const pivotHost = containerPath(root, await resolveInRoot(root, pivot));
    for (const e of await matchSources(pivotHost, [pattern], instr.startLine, instr.kind)) {
      const excluded = opts.exclude?.matches(e.rel) === true;
      if (excluded && (!e.stat.isDirectory() || opts.exclude?.hasExceptions !== true)) {
        continue;
      }
      out.push({ ...e, excludeBase: e.rel, parentsRoot: pivotHost });
    }
  }
  return out;
}

async function copyInto(
  fs: ContainerFs,
  instr: CopyInstruction | AddInstruction,
  sourceRoot: string,
  sources: SourceEntry[],
  workdir: string,
  opts: CopyOptions = { parents: false },
): Promise<void> {
  const owner = opts.owner ?? (instr.chown !== undefined ? await chownOwner(fs.merged, instr) : null);
  let mode: number | null = null;
  if (instr.chmod !== undefined) {
    if (!/^[0-7]{3,4}$/.test(instr.chmod)) {
      throw new BuildError(
        `${instr.kind} --chmod=${instr.chmod}: expected an octal mode such as 0755`,
        instr.startLine,
      );
    }
    mode = parseInt(instr.chmod, 8);
  }
  const req = {
    sourceRoot,
    targetRoot: fs.merged,
    workdir,
    owner,
    mode,
    line: instr.startLine,
    kind: instr.kind,
    ...(opts.exclude !== undefined ? { exclude: opts.exclude } : {}),
  };
  if (!opts.parents) {
    await copyIntoContainer({ ...req, sources, dest: instr.dest });
    return;
  }
  // --parents: the destination is a directory; each match lands at its path below it, its
  // parents (and a matched directory itself) made with their source directories' metadata.
  const destDir = posix.isAbsolute(instr.dest) ? instr.dest : posix.join(workdir, instr.dest);
  await ensureContainerDir(req, destDir);
  for (const src of sources) {
    const at = src.stat.isDirectory() ? src.rel : posix.dirname(src.rel);
    if (src.parentsRoot !== undefined) {
      await makeParentDirs(req, src.parentsRoot, destDir, at);
    }
    await copyIntoContainer({ ...req, sources: [src], dest: `${posix.join(destDir, at)}/` });
  }
}

/**
 * True for a file ADD unpacks: a compressed stream, or an uncompressed tar (`ustar` at 257).
 * Compression is sniffed first: a small gzip archive is often under the 512 bytes an
 * uncompressed tar header needs (Buildah and BuildKit unpack it too).
 */
async function isLocalArchive(path: string): Promise<boolean> {
  const st = await lstat(path).catch(() => null);
  if (st === null || !st.isFile() || st.size === 0) {
    return false;
  }
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(Math.min(512, st.size));
    await fh.read(head, 0, head.length, 0);
    if (detectCompression(head) !== 'none') {
      return true;
    }
    return head.length >= 512 && head.subarray(257, 262).toString('latin1') === 'ustar';
  } finally {
    await fh.close();
  }
}

/** Unpacks a downloaded archive into the destination directory (ADD --unpack=true of a URL). */
async function unpackArchive(
  fs: ContainerFs,
  instr: AddInstruction,
  file: SourceEntry,
  workdir: string,
  limit: number | undefined,
): Promise<void> {
  const dest = posix.isAbsolute(instr.dest) ? instr.dest : posix.join(workdir, instr.dest);
  const destDir = containerPath(fs.merged, await resolveInRoot(fs.merged, dest));
  await mkdir(destDir, { recursive: true });
  await applyLayer(createReadStream(file.host), destDir, {
    devices: 'reject',
    kind: 'plain',
    ...(limit !== undefined ? { maxBytes: limit } : {}),
  }).catch((err: unknown) => {
    if ((err as { cause?: { code?: unknown } }).cause?.code === 'TAR_TOO_LARGE') {
      throw new BuildError(
        `ADD ${file.rel}: the archive unpacks to more than MAX_ADD_UNPACKED_BYTES (${limit} bytes)`,
        instr.startLine,
      );
    }
    throw err;
  });
}

/**
 * `ADD <git url> <dir>` (https://docs.docker.com/reference/dockerfile/#adding-files-from-a-git-repository):
 * the repository at `#ref` (default: the remote's HEAD), or its `:subdir`, is copied into the
 * destination directory as a directory's contents, without `.git` unless `--keep-git-dir`.
 * The ref is resolved first and the step keyed by the commit (and subdir, keep-git-dir), so a
 * cached step fetches nothing; `--checksum=<commit>` must match the commit (or an annotated
 * tag's object id), checked before anything is fetched. One git source per ADD here.
 */
async function prepareAddGit(
  host: StepHost,
  input: StepInput<AddInstruction>,
  parent: string,
  target: StepInput<AddInstruction>['state'],
  createdBy: string,
  opts: CopyOptions,
): Promise<PreparedStep> {
  const { instr, instruction, workdir } = input;
  if (instr.sources.length !== 1) {
    throw new BuildError('ADD: a git source must be the only source of its ADD', instr.startLine);
  }
  if (instr.unpack === true) {
    throw new BuildError('ADD --unpack cannot be used with a git source', instr.startLine);
  }
  const url = instr.sources[0];
  const scratch = join(host.jobDir, 'git');
  const git = await resolveBuildGitSource(
    url,
    host.options,
    host.ctx.signal,
    scratch,
    'ADD',
    instr.startLine,
    host.ctx.ssh,
    instr.checksum,
  );
  host.ctx.reporter.log(
    null,
    'system',
    `ADD ${git.remote}#${git.source.ref ?? 'HEAD'}: commit ${git.resolved.commit}\n`,
  );
  const key = stepCacheKey({
    parent,
    instruction,
    inputs: {
      workdir,
      epoch: host.epoch,
      git: {
        remote: git.remote,
        commit: git.resolved.commit,
        subdir: git.source.subdir,
        keepGitDir: instr.keepGitDir,
        // Still keyed by the parent commit alone (it pins the submodules'); the marker keeps
        // steps cached before submodules were checked out from being reused without them.
        submodules: 'recursive',
      },
    },
  });
  return {
    key,
    metadata: null,
    createdBy,
    run: () =>
      host.withContainer(target, async (fs) => {
        const { checkout, dir } = await checkoutBuildGitSource(
          git,
          host.options,
          host.ctx.signal,
          scratch,
          instr.keepGitDir,
          'ADD',
          instr.startLine,
          host.ctx.ssh,
        );
        try {
          // The checkout's contents, as `COPY dir/ dest/` copies a directory's.
          const sources = await matchSources(dir, ['.'], instr.startLine, instr.kind);
          const dest = instr.dest.endsWith('/') ? instr.dest : `${instr.dest}/`;
          await copyInto(fs, { ...instr, dest }, dir, sources, workdir, opts);
        } finally {
          await rm(checkout, { recursive: true, force: true });
        }
      }),
  };
}
