import { createReadStream } from 'node:fs';
import { cp, lstat, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { NamedContextSource } from '@stratum/contracts';
import { ContainerFs, LayerDescriptor } from '@stratum/images';
import { applyLayer, LayerError } from '@stratum/layers';
import { HistoryEntry, parsePlatform } from '@stratum/oci';
import { stepCacheKey } from './build-cache';
import { BuildError } from './build-errors';
import { checkoutBuildGitSource, resolveBuildGitSource } from './git-checkout';
import { ImageState, scratchState } from './image-state';
import { ociLayoutState } from './oci-layout-context';
import { fetchRemote } from './remote-source';
import { StepHost } from './step-host';

/**
 * The name a named context is looked up by, as BuildKit's NamedContext normalises it: the
 * familiar form without `:latest` (`docker.io/library/alpine:latest` and `alpine` are one).
 */
export function familiarName(ref: string): string {
  let name = ref.trim().toLowerCase();
  name = name.replace(/^(docker\.io|index\.docker\.io)\//, '');
  if (/^library\/[^/]+$/.test(name)) {
    name = name.slice('library/'.length);
  }
  return name.replace(/:latest$/, '');
}

/** What a build run lends the named contexts beside a step's host. */
export interface NamedContextHost extends StepHost {
  /** The cache record of `key`, trusted only while its layer is stored. */
  lookupLayer(key: string): Promise<{ layer: LayerDescriptor | null; history: HistoryEntry } | null>;
  /** Records `key` (once its layer is stored, when its export is still running). */
  recordLayer(key: string, layer: LayerDescriptor | null, history: HistoryEntry): Promise<void>;
  /** An image as FROM resolves it (our registry, then other registries). */
  imageState(ref: string, line: number): Promise<ImageState>;
  /** Time stamp of new history entries. */
  now(): string;
  /** The platform built for (an OCI layout's index gives its image for it). */
  readonly targetPlatform: string;
}

/**
 * A build's named contexts (`--build-context name=…`, as buildx): each becomes an image state
 * once, when `FROM name`, `COPY --from=name` or `RUN --mount=from=name` first needs it. An
 * image context is that image, an OCI layout one the image the client uploaded from it; a directory, git repository or tarball becomes one layer on
 * scratch (no config), keyed by its content (the uploaded tar's digest, the commit, the
 * download's digest) so a rebuild reuses it.
 */
export class NamedContexts {
  private readonly byName = new Map<string, { name: string; source: NamedContextSource }>();
  private readonly states = new Map<string, Promise<ImageState>>();

  constructor(
    private readonly host: NamedContextHost,
    sources: Readonly<Record<string, NamedContextSource>> | undefined,
  ) {
    for (const [name, source] of Object.entries(sources ?? {})) {
      this.byName.set(familiarName(name), { name, source });
    }
  }

  /** The state of the context `ref` names, or null when no named context has that name. */
  state(ref: string, line: number): Promise<ImageState> | null {
    const key = familiarName(ref);
    const entry = this.byName.get(key);
    if (entry === undefined) {
      return null;
    }
    let pending = this.states.get(key);
    if (pending === undefined) {
      pending = this.load(entry.name, entry.source, line);
      this.states.set(key, pending);
    }
    return pending;
  }

  private async load(name: string, source: NamedContextSource, line: number): Promise<ImageState> {
    const host = this.host;
    const log = (t: string): void => host.ctx.reporter.log(null, 'system', t);
    switch (source.kind) {
      case 'image': {
        log(`named context ${name}: image ${source.ref}\n`);
        return host.imageState(source.ref, line);
      }
      case 'local': {
        log(`named context ${name}: directory ${source.digest}\n`);
        return this.layerState(name, { kind: 'local', digest: source.digest }, async (fs) => {
          await applyLayer(await host.options.blobs.get(source.digest), fs.merged, {
            devices: 'reject',
            kind: 'plain',
            ...(host.options.maxContextBytes !== undefined ? { maxBytes: host.options.maxContextBytes } : {}),
            ...(host.options.maxContextEntries !== undefined
              ? { maxEntries: host.options.maxContextEntries }
              : {}),
          }).catch((err: unknown) => {
            if (err instanceof LayerError || (err as { code?: string }).code === 'BLOB_UNKNOWN') {
              throw new BuildError(`named context ${name}: ${(err as Error).message}`, line);
            }
            throw err;
          });
        });
      }
      case 'oci-layout': {
        log(`named context ${name}: OCI layout image ${source.root} (${source.digest})\n`);
        return ociLayoutState(host, name, source, parsePlatform(host.targetPlatform), line);
      }
      case 'git': {
        const what = `named context ${name}`;
        const scratch = join(host.jobDir, 'git');
        const git = await resolveBuildGitSource(
          source.url,
          host.options,
          host.ctx.signal,
          scratch,
          what,
          line,
          host.ctx.ssh,
        );
        log(`${what}: ${git.remote}#${git.source.ref ?? 'HEAD'} at ${git.resolved.commit}\n`);
        const id = {
          kind: 'git',
          remote: git.remote,
          commit: git.resolved.commit,
          subdir: git.source.subdir,
          // As ADD's key: the commit pins the submodules; older entries lack them.
          submodules: 'recursive',
        };
        return this.layerState(name, id, async (fs) => {
          const { checkout, dir } = await checkoutBuildGitSource(
            git,
            host.options,
            host.ctx.signal,
            scratch,
            false,
            what,
            line,
            host.ctx.ssh,
          );
          try {
            await cp(dir, fs.merged, { recursive: true, verbatimSymlinks: true, force: true });
          } finally {
            await rm(checkout, { recursive: true, force: true });
          }
        });
      }
      case 'http': {
        const dir = join(host.jobDir, 'named-http');
        await mkdir(dir, { recursive: true });
        const fetched = await fetchRemote(source.url, dir, { line, signal: host.ctx.signal }).catch(
          (err: unknown) => {
            throw err instanceof BuildError
              ? new BuildError(`named context ${name}: ${err.message.replace(/^ADD /, '')}`, line)
              : err;
          },
        );
        log(`named context ${name}: ${source.url} (${fetched.digest})\n`);
        return this.layerState(name, { kind: 'http', digest: fetched.digest }, async (fs) => {
          // BuildKit copies the download with AttemptUnpack: a tarball is unpacked, anything
          // else lands as the file `/context`.
          try {
            await applyLayer(createReadStream(fetched.path), fs.merged, {
              devices: 'reject',
              kind: 'plain',
              ...(host.options.maxContextBytes !== undefined
                ? { maxBytes: host.options.maxContextBytes }
                : {}),
            });
          } catch (err) {
            if (
              !(err instanceof LayerError) ||
              (await lstat(join(fs.merged, 'context')).catch(() => null)) !== null
            ) {
              throw new BuildError(`named context ${name}: ${(err as Error).message}`, line);
            }
            await cp(fetched.path, join(fs.merged, 'context'));
          }
        });
      }
    }
  }

  /** One layer on scratch made by `fill`, cached under the context's content id. */
  private async layerState(
    name: string,
    id: Record<string, unknown>,
    fill: (fs: ContainerFs) => Promise<void>,
  ): Promise<ImageState> {
    const host = this.host;
    const key = stepCacheKey({ parent: 'scratch', instruction: 'named-context', inputs: { v: 1, ...id } });
    const state = scratchState();
    state.cacheKey = key;
    const hit = host.data.noCache ? null : await host.lookupLayer(key);
    if (hit !== null) {
      if (hit.layer !== null) {
        state.layers.push(hit.layer);
      }
      state.config.history = [hit.history];
      return state;
    }
    const layer = await host.withContainer(scratchState(), async (fs) => {
      await fill(fs);
    });
    const history: HistoryEntry = {
      created: host.now(),
      created_by: `named context ${name}`,
      ...(layer === null ? { empty_layer: true } : {}),
    };
    if (layer !== null) {
      state.layers.push(layer);
    }
    state.config.history = [history];
    await host.recordLayer(key, layer, history);
    return state;
  }
}
