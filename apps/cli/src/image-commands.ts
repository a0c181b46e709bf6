import { spawn } from 'node:child_process';
import { createReadStream, statSync } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { Command, Option } from 'commander';
import type { PushRecord } from '@stratum/contracts';
import type { ImageHistoryEntry } from '@stratum/images';
import { ApiError } from './api-client';
import { CliContext, OutputFormat, registryCredentials, registryOf, splitTag } from './cli-context';
import { resolveContainerId } from './container-commands';
import { ago, ellipsis, humanSize, json, rfc3339, shortId, table } from './format';
import { onInterrupt } from './interrupt';
import { ByteProgress, ProgressBoard } from './progress-bar';

const formatOption = (): Option =>
  new Option('--format <format>', 'output format').choices(['table', 'json']).default('table');

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** docker's `-H=false` / `--human=false`: commander hands over `=false` for the short form. */
function parseBool(value: string): boolean {
  const v = value.replace(/^=/, '').toLowerCase();
  if (v === 'true' || v === '1') {
    return true;
  }
  if (v === 'false' || v === '0') {
    return false;
  }
  throw new ApiError(0, 'BAD_REQUEST', `expected true or false, got "${value}"`);
}

/** The rows of `docker history`: IMAGE CREATED CREATED BY SIZE COMMENT (or CREATED AT with -H=false). */
export function historyTable(
  rows: readonly ImageHistoryEntry[],
  o: { human: boolean; noTrunc: boolean; now?: number },
): string {
  const head = ['IMAGE', o.human ? 'CREATED' : 'CREATED AT', 'CREATED BY', 'SIZE', 'COMMENT'];
  const body = rows.map((r) => {
    const id = r.id === null ? '<missing>' : o.noTrunc ? r.id : shortId(r.id);
    const createdBy = r.createdBy.replace(/\t/g, ' ');
    return [
      id,
      o.human ? ago(r.created, o.now) : rfc3339(r.created),
      o.noTrunc ? createdBy : ellipsis(createdBy, 45),
      o.human ? humanSize(r.size) : String(r.size),
      r.comment,
    ];
  });
  return table([head, ...body]);
}

/** Reads a tar file, `-` (stdin) or a directory (tarred by GNU tar, owners and modes kept). */
function importSource(source: string): { stream: Readable; size: number | null; done: Promise<void> } {
  if (source === '-') {
    return { stream: process.stdin, size: null, done: Promise.resolve() };
  }
  const st = statSync(source);
  if (!st.isDirectory()) {
    return { stream: createReadStream(source), size: st.size, done: Promise.resolve() };
  }
  // A root filesystem needs what a context tar drops (owners, setuid bits, device nodes, xattrs).
  const tar = spawn('tar', ['--numeric-owner', '--xattrs', '-C', source, '-cf', '-', '.'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  tar.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<void>((resolve, reject) => {
    tar.on('error', (e) => reject(new ApiError(0, 'BAD_REQUEST', `tar: ${e.message}`)));
    tar.on('close', (code) =>
      code === 0
        ? resolve()
        : reject(new ApiError(0, 'BAD_REQUEST', `tar of ${source} failed: ${stderr.trim()}`)),
    );
  });
  done.catch(() => undefined);
  return { stream: tar.stdout, size: null, done };
}

/** Counts bytes through to a {@link ByteProgress}. */
export function counting(progress: ByteProgress): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      progress.add(chunk.length);
      cb(null, chunk);
    },
  });
}

function pushTotals(record: PushRecord): { done: number } {
  const t = record.targets[0];
  return t === undefined
    ? { done: 0 }
    : { done: t.blobs.uploaded + t.blobs.exists + t.blobs.mounted + t.blobs.linked };
}

export function registerImageCommands(program: Command, ctx: CliContext): void {
  const { out } = ctx;

  program
    .command('images')
    .description('List images (SIZE: compressed, what a pull transfers)')
    .argument('[repository[:tag]]', 'only this repository (and tag)')
    .option('-q, --quiet', 'only image IDs', false)
    .option('--no-trunc', 'do not truncate output')
    .option('--digests', 'show manifest digests', false)
    .addOption(formatOption())
    .action(
      async (
        filter: string | undefined,
        o: { quiet: boolean; trunc: boolean; digests: boolean; format: OutputFormat },
      ) => {
        let images = await ctx.client().listImages();
        if (filter !== undefined) {
          const f = filter.includes(':') ? splitTag(filter) : { repository: filter, tag: null };
          images = images.filter((i) => i.repository === f.repository && (f.tag === null || i.tag === f.tag));
        }
        images.sort(
          (a, b) =>
            (b.created ?? '').localeCompare(a.created ?? '') || a.repository.localeCompare(b.repository),
        );
        if (o.format === 'json') {
          out(json(images));
          return;
        }
        const id = (d: string): string => (o.trunc ? shortId(d) : d);
        if (o.quiet) {
          out([...new Set(images.map((i) => id(i.configDigest)))].map((i) => `${i}\n`).join(''));
          return;
        }
        const head = ['REPOSITORY', 'TAG', ...(o.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
        out(
          table([
            head,
            ...images.map((i) => [
              i.repository,
              i.tag,
              ...(o.digests ? [i.manifestDigest] : []),
              id(i.configDigest),
              ago(i.created),
              humanSize(i.size),
            ]),
          ]),
        );
      },
    );

  program
    .command('history')
    .description("Show an image's history: each step with its layer size, newest first")
    .argument('<image>', 'repo[:tag] or repo@sha256:…')
    .option('--no-trunc', 'do not truncate output')
    .option(
      '-H, --human <bool>',
      'human-readable sizes and dates (-H=false: RFC 3339, bytes)',
      parseBool,
      true,
    )
    .option('-q, --quiet', 'only image IDs', false)
    .addOption(formatOption())
    .action(
      async (image: string, o: { trunc: boolean; human: boolean; quiet: boolean; format: OutputFormat }) => {
        const rows = await ctx.client().imageHistory(image);
        if (o.format === 'json') {
          out(json(rows));
          return;
        }
        if (o.quiet) {
          out(rows.map((r) => `${r.id === null ? '<missing>' : o.trunc ? shortId(r.id) : r.id}\n`).join(''));
          return;
        }
        out(historyTable(rows, { human: o.human, noTrunc: !o.trunc }));
      },
    );

  program
    .command('inspect')
    .description('Show images or containers as JSON (an array, as docker inspect)')
    .argument('<name...>', 'image references or container ids')
    .addOption(new Option('--type <type>', 'only this kind').choices(['image', 'container']))
    .action(async (names: string[], o: { type?: 'image' | 'container' }) => {
      const api = ctx.client();
      const found: unknown[] = [];
      let failed = false;
      for (const name of names) {
        try {
          if (o.type !== 'image' && /^[0-9a-f]{4,32}$/.test(name)) {
            const id = await resolveContainerId(api, name).catch((e: unknown) => {
              if (o.type === 'container') {
                throw e;
              }
              return null;
            });
            if (id !== null) {
              found.push(await api.getContainer(id));
              continue;
            }
          }
          found.push(await api.getImage(name));
        } catch (e) {
          if (!(e instanceof ApiError)) {
            throw e;
          }
          ctx.err(`Error: No such object: ${name}\n`);
          failed = true;
        }
      }
      out(json(found));
      if (failed) {
        process.exitCode = 1;
      }
    });

  program
    .command('tag')
    .description('Create a tag TARGET that refers to SOURCE')
    .argument('<source>', 'repo[:tag] or repo@sha256:…')
    .argument('<target>', 'repo[:tag]')
    .action(async (source: string, target: string) => {
      const t = splitTag(target);
      await ctx.client().tagImage(source, t.repository, t.tag);
    });

  program
    .command('rmi')
    .description('Remove tags and images (blobs go at the next garbage collection)')
    .argument('<image...>', 'repo[:tag] or repo@sha256:…')
    .option('-f, --force', 'remove an image by digest with the tags that name it', false)
    .action(async (images: string[], o: { force: boolean }) => {
      const api = ctx.client();
      let failed = false;
      for (const image of images) {
        try {
          const ref = image.includes('@') || image.includes(':') ? image : `${image}:latest`;
          const removed = await api.removeImage(ref, o.force);
          removed.untagged.forEach((u) => out(`Untagged: ${u}\n`));
          if (removed.deleted !== null) {
            out(`Deleted: ${removed.deleted}\n`);
          }
        } catch (e) {
          if (!(e instanceof ApiError)) {
            throw e;
          }
          ctx.err(`Error: ${e.message}\n`);
          failed = true;
        }
      }
      if (failed) {
        process.exitCode = 1;
      }
    });

  program
    .command('pull')
    .description('Copy an image from another registry into Stratum (docker.io when no host is named)')
    .argument('<name>', '[host[:port]/]repo[:tag|@sha256:…]')
    .option('-q, --quiet', 'print only the result', false)
    .action(async (name: string, o: { quiet: boolean }) => {
      const abort = new AbortController();
      const stop = onInterrupt(() => {
        ctx.err('\npull cancelled (Ctrl-C): the server stops fetching; blobs already stored stay\n');
        abort.abort();
      });
      const board = new ProgressBoard(ctx.progress);
      const host = registryOf(name);
      let result: { repository: string; tag: string | null; manifestDigest: string } | null = null;
      try {
        for await (const e of ctx
          .client()
          .pullImage(name, host === null ? undefined : registryCredentials(ctx, host), abort.signal)) {
          switch (e.type) {
            case 'resolved':
              if (!o.quiet) {
                out(`${e.tag ?? e.manifestDigest}: Pulling from ${e.source.replace(/[:@][^/]*$/, '')}\n`);
              }
              break;
            case 'blob':
              if (!o.quiet) {
                const status =
                  e.status === 'exists'
                    ? 'Already exists'
                    : e.status === 'done'
                      ? 'Pull complete'
                      : 'Downloading';
                board.update(e.digest, shortId(e.digest), status, e.current, e.size);
              }
              break;
            case 'done':
              result = e;
              break;
            case 'error':
              throw new ApiError(0, e.code, e.message);
          }
        }
      } catch (e) {
        if (abort.signal.aborted) {
          process.exitCode = 130;
          return;
        }
        throw e;
      } finally {
        stop();
      }
      if (result === null) {
        throw new ApiError(0, 'UNAVAILABLE', 'the pull ended without a result (server restarted?)');
      }
      const local = `${result.repository}${result.tag !== null ? `:${result.tag}` : `@${result.manifestDigest}`}`;
      if (o.quiet) {
        out(`${local}\n`);
        return;
      }
      out(`Digest: ${result.manifestDigest}\nStatus: Downloaded image into Stratum as ${local}\n`);
    });

  program
    .command('push')
    .description(
      'Push an image to another registry (push job with progress). NAME host/repo:tag pushes the local repo:tag there',
    )
    .argument('<name>', 'host[:port]/repo[:tag], or a local image followed by its targets')
    .argument('[targets...]', 'host[:port]/repo:tag (or repo:tag of this registry)')
    .option('-q, --quiet', 'print only the result', false)
    .action(async (name: string, targets: string[], o: { quiet: boolean }) => {
      let source = name;
      if (targets.length === 0) {
        const host = registryOf(name);
        if (host === null) {
          throw new ApiError(
            0,
            'BAD_REQUEST',
            `"${name}" names no other registry: stratum push IMAGE host/repo:tag`,
          );
        }
        source = name.slice(host.length + 1);
        targets = [name];
      }
      const hosts = [...new Set(targets.map(registryOf).filter((h): h is string => h !== null))];
      // One set of credentials per push (the API's shape): those stored for its first registry.
      const credentials = hosts.length > 0 ? registryCredentials(ctx, hosts[0]) : undefined;
      const api = ctx.client();
      const blobs = await api
        .getImage(source)
        .then((i) => i.layers.length + 1)
        .catch(() => null);
      let record = await api.pushImage(source, targets, credentials);
      let cancelled = false;
      // Ctrl-C cancels the push on the server (DELETE) and follows it to its end.
      const stop = onInterrupt(() => {
        cancelled = true;
        ctx.err(`\n=> Ctrl-C: cancelling push ${record.id}\n`);
        api.cancelPush(record.id).catch((e: unknown) => {
          ctx.err(`stratum: cancel failed: ${e instanceof Error ? e.message : String(e)}\n`);
        });
      });
      const board = new ProgressBoard(ctx.progress);
      try {
        if (!o.quiet) {
          out(`The push refers to ${targets.join(', ')} (push ${record.id})\n`);
        }
        while (record.state === 'queued' || record.state === 'running') {
          if (!o.quiet) {
            for (const t of record.targets) {
              const done = t.blobs.uploaded + t.blobs.exists + t.blobs.mounted + t.blobs.linked;
              board.update(t.target, t.target, t.state === 'running' ? 'Pushing' : 'Waiting', done, blobs);
            }
          }
          await new Promise((r) => setTimeout(r, 300));
          record = await api.getPush(record.id);
        }
      } finally {
        stop();
      }
      for (const t of record.targets) {
        const b = t.blobs;
        if (!o.quiet) {
          board.update(
            t.target,
            t.target,
            t.state === 'succeeded' ? 'Pushed' : `Failed: ${t.error ?? ''}`,
            pushTotals(record).done,
            blobs,
          );
          out(
            `${t.target}: ${t.state} (uploaded ${b.uploaded}, existed ${b.exists}, mounted ${b.mounted}, linked ${b.linked})\n`,
          );
        }
      }
      if (record.state !== 'succeeded') {
        ctx.err(`push ${record.state}${record.error !== null ? `: ${record.error}` : ''}\n`);
        process.exitCode = cancelled ? 130 : 1;
        return;
      }
      out(o.quiet ? `${record.manifestDigest}\n` : `digest: ${record.manifestDigest}\n`);
    });

  program
    .command('import')
    .description('Import a root filesystem (tar, tar.gz, a directory or - for stdin) as a one-layer image')
    .argument('<file>', 'tar file, directory or -')
    .argument('<repository[:tag]>', 'the image name')
    .option('-m, --message <message>', 'commit message', '')
    .option(
      '-c, --change <instruction>',
      'apply a Dockerfile instruction (CMD, ENV, …; repeatable)',
      collect,
      [],
    )
    .option('--platform <os/arch>', 'the platform the root filesystem is for (default linux/amd64)')
    .option('-q, --quiet', 'print only the image digest', false)
    .action(
      async (
        file: string,
        name: string,
        o: { message: string; change: string[]; quiet: boolean; platform?: string },
      ) => {
        const { repository, tag } = splitTag(name);
        const src = importSource(file);
        const progress = new ByteProgress(
          o.quiet ? { write: () => undefined } : ctx.progress,
          'importing',
          src.size,
        );
        const body = src.stream.pipe(counting(progress));
        src.stream.on('error', (e) => body.destroy(e));
        const [imported] = await Promise.all([
          ctx.client().importImage(body, {
            repository,
            tag,
            message: o.message,
            changes: o.change,
            ...(o.platform !== undefined ? { platform: o.platform } : {}),
          }),
          src.done,
        ]);
        if (!o.quiet) {
          progress.done();
        }
        out(`${imported.manifestDigest}\n`);
      },
    );
}
