import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, open, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { checkFileName, containerPath, resolveInRoot } from '@stratum/confine';
import { AddInstruction, CopyInstruction } from '@stratum/dockerfile';
import { ContainerFs } from '@stratum/images';
import { applyLayer, detectCompression } from '@stratum/layers';
import { resolveUser } from '@stratum/runtime';
import { stableJson, stepCacheKey } from './build-cache';
import { BuildError } from './build-errors';
import { copyIntoContainer, matchSources, SourceEntry } from './file-copy';
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
  const { state, instr, parent, instruction, workdir } = input;
  if (instr.exclude.length > 0) {
    throw new BuildError(`${instr.kind} --exclude is not supported yet`, instr.startLine);
  }
  if (instr.kind === 'COPY' && instr.parents) {
    throw new BuildError('COPY --parents is not supported yet', instr.startLine);
  }
  if (instr.inlineSources.length > 0 && instr.sources.length > 0) {
    throw new BuildError(`${instr.kind}: mixing heredoc and file sources is not supported`, instr.startLine);
  }
  const createdBy = `${instr.kind} ${[...instr.sources, ...instr.inlineSources.map((s) => s.path)].join(' ')} ${instr.dest}`;
  const epoch = host.epoch;
  const base = { workdir, epoch };
  // COPY --from: the source stage's (or image's) key stands for every file it could read.
  if (instr.kind === 'COPY' && instr.from !== undefined) {
    const fromState = await host.fromState(instr.from, instr.startLine);
    const key = stepCacheKey({ parent, instruction, inputs: { ...base, from: fromState.cacheKey } });
    return {
      key,
      metadata: null,
      createdBy,
      run: () =>
        host.withContainer(state, async (fs) => {
          const from = await host.mountState(`${fs.id}-from`, fromState);
          try {
            const sources = await matchSources(from.root, instr.sources, instr.startLine, instr.kind);
            await copyInto(fs, instr, from.root, sources, workdir);
          } finally {
            await from.release();
          }
        }),
    };
  }
  if (instr.inlineSources.length > 0) {
    // Heredoc sources: their text is part of the instruction, hence of the key.
    const key = stepCacheKey({ parent, instruction, inputs: base });
    return {
      key,
      metadata: null,
      createdBy,
      run: () =>
        host.withContainer(state, async (fs) => {
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
    };
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
      }),
    )
    .digest('hex')}`;
  let sources: SourceEntry[] | null = null;
  const localSources = async (): Promise<SourceEntry[]> => {
    if (sources === null) {
      if (local.length > 0) {
        await host.context.materialize();
      }
      sources = await matchSources(host.context.dir, local, instr.startLine, instr.kind);
    }
    return sources;
  };
  let sourcesDigest = local.length === 0 ? null : ((await host.engine.cacheIndex.getMemo?.(memoKey)) ?? null);
  if (sourcesDigest === null) {
    sourcesDigest = await hashSources(await localSources());
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
  return {
    key,
    metadata: null,
    createdBy,
    run: () =>
      host.withContainer(state, async (fs) => {
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
          await copyInto(fs, instr, host.context.dir, toCopy, workdir);
        }
        for (const f of fetched) {
          await copyInto(fs, instr, posix.dirname(f.host), [f], workdir);
        }
      }),
  };
}

async function copyInto(
  fs: ContainerFs,
  instr: CopyInstruction | AddInstruction,
  sourceRoot: string,
  sources: SourceEntry[],
  workdir: string,
): Promise<void> {
  let owner: { uid: number; gid: number } | null = null;
  if (instr.chown !== undefined) {
    try {
      const u = await resolveUser(fs.merged, instr.chown);
      owner = { uid: u.uid, gid: u.gid };
    } catch (err) {
      throw new BuildError(
        `${instr.kind} --chown=${instr.chown}: ${(err as Error).message}`,
        instr.startLine,
      );
    }
  }
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
  await copyIntoContainer({
    sourceRoot,
    sources,
    targetRoot: fs.merged,
    dest: instr.dest,
    workdir,
    owner,
    mode,
    line: instr.startLine,
    kind: instr.kind,
  });
}

/** True for a file ADD unpacks: a compressed stream, or an uncompressed tar (`ustar` at 257). */
async function isLocalArchive(path: string): Promise<boolean> {
  const st = await lstat(path).catch(() => null);
  if (st === null || !st.isFile() || st.size < 512) {
    return false;
  }
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(512);
    await fh.read(head, 0, 512, 0);
    if (detectCompression(head) !== 'none') {
      return true;
    }
    return head.subarray(257, 262).toString('latin1') === 'ustar';
  } finally {
    await fh.close();
  }
}
