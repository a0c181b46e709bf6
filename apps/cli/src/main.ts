#!/usr/bin/env node
import { Command, Option } from 'commander';
import { BuildEvent, BuildState, isTerminalBuildState } from '@stratum/contracts';
import { ConfigError, loadCliConfig } from '@stratum/config';
import { ApiClient, ApiError, SubmitOptions } from './api-client';
import { ContextDigestCache, contextFingerprint } from './context-cache';
import { DockerfileLocation, locateDockerfile, planLocatedContext, tarContext } from './context-tar';
import { ProgressPrinter } from './progress';

const out = (s: string): void => void process.stdout.write(s);
const err = (s: string): void => void process.stderr.write(s);

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parseBuildArgs(pairs: string[]): Record<string, string> {
  const args: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      throw new ApiError(0, 'BAD_REQUEST', `--build-arg must be KEY=VALUE, got "${pair}"`);
    }
    args[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return args;
}

/** Follows a build to its end, printing progress; returns the final state and image. */
async function follow(
  client: ApiClient,
  id: string,
): Promise<{ state: BuildState; imageDigest: string | null }> {
  const printer = new ProgressPrinter(out);
  let state: BuildState | null = null;
  let imageDigest: string | null = null;
  for await (const event of client.followBuild(id)) {
    printer.print(event);
    state = stateOf(event) ?? state;
    imageDigest = event.type === 'result' ? event.imageDigest : imageDigest;
  }
  printer.end();
  if (state === null || !isTerminalBuildState(state) || (state === 'succeeded' && imageDigest === null)) {
    const record = await client.getBuild(id); // stream ended early (API restart): ask
    return { state: record.state, imageDigest: record.imageDigest };
  }
  return { state, imageDigest };
}

function stateOf(e: BuildEvent): BuildState | null {
  return e.type === 'state' ? e.state : null;
}

/**
 * Submits the build. An unchanged context (same {@link contextFingerprint} as when it was last
 * sent to this server) is named by its digest; the tar is sent when it is new or the server
 * no longer has it.
 */
async function submitContext(
  api: ApiClient,
  loc: DockerfileLocation,
  options: SubmitOptions,
): Promise<{ id: string }> {
  const { cacheDir, serverUrl } = api.config;
  const cache = cacheDir === null ? null : new ContextDigestCache(cacheDir, serverUrl);
  const fingerprint = cache === null ? null : await contextFingerprint(loc);
  const known = cache === null || fingerprint === null ? null : await cache.lookup(loc, fingerprint);
  if (known !== null) {
    try {
      const submitted = await api.submitBuild(null, { ...options, context: known });
      out(`=> build context unchanged (${known}), not sent again\n`);
      return submitted;
    } catch (e) {
      if (!(e instanceof ApiError && e.code === 'CONTEXT_MISSING')) {
        throw e;
      }
    }
  }
  const plan = await planLocatedContext(loc);
  const { stream, cleanup } = await tarContext(loc.root, plan);
  try {
    out(`=> sending build context (${plan.files.length} entries)\n`);
    const submitted = await api.submitBuild(stream, options);
    if (cache !== null && fingerprint !== null) {
      await cache.remember(loc, fingerprint, submitted.contextDigest);
    }
    return submitted;
  } finally {
    cleanup();
  }
}

export function buildProgram(client: () => ApiClient): Command {
  const program = new Command('stratum').description('Stratum: container image builds').showHelpAfterError();

  program
    .command('build')
    .description('Build an image from a Dockerfile and a context directory')
    .argument('<dir>', 'build context directory')
    .option('-t, --tag <repo:tag>', 'name and tag the image (repeatable)', collect, [])
    .option('-f, --file <path>', 'Dockerfile (default: DIR/Dockerfile)')
    .option('--build-arg <KEY=VALUE>', 'set a build-time variable (repeatable)', collect, [])
    .option('--target <stage>', 'build this stage only')
    .addOption(new Option('--no-cache', 'do not use the build cache'))
    .option('--push', 'push tags naming another registry (host/repo:tag) there once built', false)
    .action(
      async (
        dir: string,
        o: {
          tag: string[];
          file?: string;
          buildArg: string[];
          target?: string;
          cache: boolean;
          push: boolean;
        },
      ) => {
        const api = client();
        const loc = locateDockerfile(dir, o.file, process.cwd());
        const options: SubmitOptions = {
          tags: o.tag,
          dockerfile: loc.sentAs,
          buildArgs: parseBuildArgs(o.buildArg),
          target: o.target ?? null,
          noCache: !o.cache,
          push: o.push,
        };
        const submitted = await submitContext(api, loc, options);
        out(`=> build ${submitted.id}\n`);
        const { state, imageDigest } = await follow(api, submitted.id);
        if (state !== 'succeeded') {
          const record = await api.getBuild(submitted.id);
          err(`build ${state}${record.error ? `: ${record.error}` : ''}\n`);
          process.exitCode = 1;
          return;
        }
        // The stream named the image: no need to ask for the record (tags are the ones asked for).
        out(`=> done: ${imageDigest ?? ''} ${o.tag.join(' ')}\n`);
      },
    );

  program
    .command('builds')
    .description('List builds, newest first')
    .option('--offset <n>', 'skip this many', '0')
    .option('--limit <n>', 'show this many', '20')
    .action(async (o: { offset: string; limit: string }) => {
      const page = await client().listBuilds(Number(o.offset), Number(o.limit));
      out(`${'ID'.padEnd(36)}  ${'STATE'.padEnd(9)}  ${'CREATED'.padEnd(24)}  TAGS\n`);
      for (const b of page.items) {
        out(`${b.id}  ${b.state.padEnd(9)}  ${b.createdAt.padEnd(24)}  ${b.tags.join(',')}\n`);
      }
      out(`(${page.items.length} of ${page.total})\n`);
    });

  program
    .command('logs')
    .description("Show a build's log (follows it while it runs)")
    .argument('<id>', 'build id')
    .action(async (id: string) => {
      const { state } = await follow(client(), id);
      process.exitCode = state === 'succeeded' ? 0 : 1;
    });

  program
    .command('cancel')
    .description('Cancel a build')
    .argument('<id>', 'build id')
    .action(async (id: string) => {
      const record = await client().cancelBuild(id);
      out(`${record.id} ${record.state}\n`);
    });

  return program;
}

async function main(): Promise<void> {
  try {
    const config = loadCliConfig();
    await buildProgram(() => new ApiClient(config)).parseAsync(process.argv);
  } catch (e) {
    if (e instanceof ApiError || e instanceof ConfigError) {
      err(`stratum: ${e.message}\n`);
      process.exitCode = 2;
      return;
    }
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT') {
      err(`stratum: ${(e as Error).message}\n`);
      process.exitCode = 2;
      return;
    }
    throw e;
  }
}

if (require.main === module) {
  void main();
}
