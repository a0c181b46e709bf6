#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { BuildEvent, BuildSource, BuildState, isTerminalBuildState } from '@stratum/contracts';
import { ConfigError, loadCliConfig } from '@stratum/config';
import { ApiClient, ApiError, SubmitOptions } from './api-client';
import { formatCheckReport } from './check-report';
import { registerAuthCommands } from './auth-commands';
import { registerRobotCommands } from './robot-commands';
import { registerWorkerCommands } from './worker-commands';
import { CliContext } from './cli-context';
import { containerLogs, registerContainerCommands } from './container-commands';
import { ContextDigestCache, contextFingerprint } from './context-cache';
import { DockerfileLocation, locateDockerfile, planLocatedContext, tarContext } from './context-tar';
import { parseOutputSpec, writeOutput } from './build-output';
import { buildContexts } from './named-contexts';
import { CredentialStore } from './credentials';
import { counting, registerImageCommands } from './image-commands';
import { registerProjectCommands } from './project-commands';
import { parseSecrets, parseSsh } from './secret-specs';
import { onInterrupt } from './interrupt';
import { ProgressPrinter } from './progress';
import { ByteProgress } from './progress-bar';

let out = (s: string): void => void process.stdout.write(s);
/** Where the context upload's byte counter draws: stderr when stdout carries `--output -`. */
let progressStream: NodeJS.WriteStream = process.stdout;
const err = (s: string): void => void process.stderr.write(s);
const silent = (): void => undefined;

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

export { parseSecrets, parseSsh };

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

/** `project refs/heads/main@abc1234 (push)`: where a build came from, in one column. */
export function describeSource(source: BuildSource | undefined): string {
  if (source === undefined || source.project === null) {
    return source?.trigger ?? '-';
  }
  const ref = (source.ref ?? '').replace(/^refs\/heads\//, '');
  const sha = source.sha === null ? '' : `@${source.sha.slice(0, 7)}`;
  return `${source.project} ${ref}${sha} (${source.trigger})`;
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
    // A TTY sees the bytes go; a log gets one line with the total.
    const progress = new ByteProgress(out === silent ? { write: silent } : progressStream, '=> context');
    const body = stream.pipe(counting(progress));
    stream.on('error', (e) => body.destroy(e));
    const submitted = await api.submitBuild(body, options);
    progress.done();
    if (cache !== null && fingerprint !== null) {
      await cache.remember(loc, fingerprint, submitted.contextDigest);
    }
    return submitted;
  } finally {
    cleanup();
  }
}

export function buildProgram(
  client: () => ApiClient,
  credentials: () => CredentialStore | null = () => null,
): Command {
  const program = new Command('stratum')
    .description('Stratum: container image builds, images and containers, docker-style')
    .showHelpAfterError()
    // `stratum run IMAGE sh -c '…'`: options after the image belong to the command run.
    .enablePositionalOptions();
  const ctx: CliContext = {
    client,
    credentials,
    out: (s) => out(s),
    err,
    progress: process.stdout,
  };

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
    .option('-q, --quiet', 'print only the image digest', false)
    .option(
      '--check',
      "run BuildKit's build checks on the Dockerfile and report them, without building",
      false,
    )
    .addOption(
      new Option(
        '--network <mode>',
        "RUN steps' network unless a step names its own (docker build --network)",
      ).choices(['sandbox', 'none', 'default']),
    )
    .option(
      '--platform <os/arch,...>',
      'build for these platforms (linux/amd64,linux/arm64): an image each, tagged as one index',
    )
    .option(
      '--secret <id=ID,src=FILE|env=VAR>',
      'a secret for RUN --mount=type=secret (repeatable), as docker build --secret',
      collect,
      [],
    )
    .option(
      '--ssh <id=KEYFILE[,KEYFILE]>',
      'private key(s) served by an ssh agent to RUN --mount=type=ssh,id=ID (repeatable; id "default" when the mount names none), as docker buildx build --ssh',
      collect,
      [],
    )
    .option(
      '--build-context <name=DIR|docker-image://REF|oci-layout://DIR[:TAG|@DIGEST]|GIT-URL|https://TARBALL>',
      'a named context for FROM name / COPY --from=name (repeatable), as docker buildx build --build-context',
      collect,
      [],
    )
    .option(
      '-o, --output <type=local|tar|oci,dest=PATH>',
      'also hand back the result, as docker buildx build --output: type=local,dest=DIR (the files), type=tar,dest=FILE|- (them as a tar), type=oci,dest=FILE|- (an OCI layout tar); "-" alone: a tar on stdout',
    )
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
          quiet: boolean;
          network?: 'sandbox' | 'none' | 'default';
          secret: string[];
          ssh: string[];
          output?: string;
          check: boolean;
          buildContext: string[];
          platform?: string;
        },
      ) => {
        if (o.check) {
          // As `docker build --check`: the Dockerfile alone is sent; exit 1 when anything is found.
          const loc = locateDockerfile(dir, o.file, process.cwd());
          const text = readFileSync(loc.path);
          const result = await client().checkDockerfile(text, parseBuildArgs(o.buildArg), o.target ?? null);
          out(formatCheckReport(result, text.toString('utf8'), loc.inContext ?? loc.path));
          if (result.warnings.length > 0 || result.error !== undefined) {
            process.exitCode = 1;
          }
          return;
        }
        const print = out;
        const output = o.output === undefined ? null : parseOutputSpec(o.output);
        if (output?.dest === '-') {
          // stdout carries the tar: progress goes to stderr, as buildx's always does.
          out = err;
          progressStream = process.stderr;
        }
        if (o.quiet) {
          out = silent;
        }
        const api = client();
        const loc = locateDockerfile(dir, o.file, process.cwd());
        const secrets = parseSecrets(o.secret, api.config.environment ?? {});
        const ssh = parseSsh(o.ssh);
        const named = await buildContexts(api, o.buildContext, process.cwd(), out, o.platform);
        const options: SubmitOptions = {
          ...(Object.keys(named).length > 0 ? { buildContexts: named } : {}),
          ...(secrets.size + ssh.size > 0 ? { secrets: await api.putSecrets(secrets, ssh) } : {}),
          tags: o.tag,
          dockerfile: loc.sentAs,
          buildArgs: parseBuildArgs(o.buildArg),
          target: o.target ?? null,
          noCache: !o.cache,
          push: o.push,
          ...(o.network !== undefined ? { network: o.network } : {}),
          ...(o.platform !== undefined ? { platforms: o.platform } : {}),
        };
        const submitted = await submitContext(api, loc, options);
        out(`=> build ${submitted.id}\n`);
        // Ctrl-C cancels the build on the server (DELETE) and follows it to its cancelled end.
        const stop = onInterrupt(() => {
          err(`\n=> Ctrl-C: cancelling build ${submitted.id}\n`);
          api.cancelBuild(submitted.id).catch((e: unknown) => {
            err(`stratum: cancel failed: ${e instanceof Error ? e.message : String(e)}\n`);
          });
        });
        let result;
        try {
          result = await follow(api, submitted.id);
        } finally {
          stop();
        }
        const { state, imageDigest } = result;
        if (state !== 'succeeded') {
          const record = await api.getBuild(submitted.id);
          err(`build ${state}${record.error ? `: ${record.error}` : ''}\n`);
          process.exitCode = state === 'cancelled' ? 130 : 1;
          return;
        }
        if (output !== null) {
          await writeOutput(
            output,
            await api.buildOutput(submitted.id, output.type === 'oci' ? 'oci' : 'tar'),
          );
          out(`=> output type=${output.type} written to ${output.dest === '-' ? 'stdout' : output.dest}\n`);
        }
        if (o.quiet) {
          (output?.dest === '-' ? err : print)(`${imageDigest ?? ''}\n`);
          return;
        }
        // The stream named the image: no need to ask for the record (tags are the ones asked for).
        out(`=> done: ${imageDigest ?? ''} ${o.tag.join(' ')}\n`);
      },
    );

  program
    .command('builds')
    .description('List builds, newest first (of one project, ref or state with the options)')
    .option('--offset <n>', 'skip this many', '0')
    .option('--limit <n>', 'show this many', '20')
    .option('--project <name>', 'builds of this project only')
    .option('--ref <ref>', 'with --project: of this branch (or refs/tags/…, refs/pull/…) only')
    .option('--state <state>', 'queued, running, succeeded, failed or cancelled')
    .option('--format <format>', 'table or json', 'table')
    .action(
      async (o: {
        offset: string;
        limit: string;
        project?: string;
        ref?: string;
        state?: string;
        format: string;
      }) => {
        if (o.ref !== undefined && o.project === undefined) {
          throw new ApiError(0, 'BAD_REQUEST', '--ref needs --project');
        }
        const page = await client().listBuilds(Number(o.offset), Number(o.limit), {
          project: o.project,
          ref: o.ref,
          state: o.state,
        });
        if (o.format === 'json') {
          out(`${JSON.stringify(page.items, null, 2)}\n`);
          return;
        }
        out(
          `${'ID'.padEnd(36)}  ${'STATE'.padEnd(9)}  ${'CREATED'.padEnd(24)}  ${'SOURCE'.padEnd(40)}  TAGS\n`,
        );
        for (const b of page.items) {
          out(
            `${b.id}  ${b.state.padEnd(9)}  ${b.createdAt.padEnd(24)}  ${describeSource(b.source).padEnd(40)}  ${b.tags.join(',')}\n`,
          );
        }
        out(`(${page.items.length} of ${page.total})\n`);
      },
    );

  program
    .command('logs')
    .description("Show a container's output (-f: follow it) or a build's log (followed while it runs)")
    .argument('<id>', 'container id (or unique prefix) or build id')
    .option('-f, --follow', "follow a container's output until it exits", false)
    .action(async (id: string, o: { follow: boolean }) => {
      // Build ids are UUIDs; container ids are 32 hex digits (a prefix of one will do).
      if (/^[0-9a-f]{1,32}$/.test(id)) {
        await containerLogs(ctx, id, o.follow);
        return;
      }
      const api = client();
      let stopped = false;
      const stop = onInterrupt(() => {
        stopped = true;
        err(`\n=> stopped following (Ctrl-C); build ${id} goes on (stratum cancel ${id} stops it)\n`);
        process.exit(130);
      });
      try {
        const { state } = await follow(api, id);
        process.exitCode = stopped ? 130 : state === 'succeeded' ? 0 : 1;
      } finally {
        stop();
      }
    });

  program
    .command('cancel')
    .description('Cancel a build')
    .argument('<id>', 'build id')
    .action(async (id: string) => {
      const record = await client().cancelBuild(id);
      out(`${record.id} ${record.state}\n`);
    });

  registerImageCommands(program, ctx);
  registerContainerCommands(program, ctx);
  registerAuthCommands(program, ctx);
  registerRobotCommands(program, ctx);
  registerWorkerCommands(program, ctx);
  registerProjectCommands(program, ctx);
  return program;
}

export async function main(): Promise<void> {
  try {
    const config = loadCliConfig();
    const store = config.configDir === null ? null : new CredentialStore(config.configDir);
    // STRATUM_TOKEN wins over what `stratum login` kept for this server.
    const token = config.token ?? store?.get(config.serverUrl)?.secret ?? null;
    await buildProgram(
      () => new ApiClient(config, token),
      () => store,
    ).parseAsync(process.argv);
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
