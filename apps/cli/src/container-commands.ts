import { Command, Option } from 'commander';
import type { ContainerRecord } from '@stratum/contracts';
import { ApiClient, ApiError } from './api-client';
import { CliContext, OutputFormat, splitTag } from './cli-context';
import { ago, humanDuration, json, quotedCommand, table } from './format';
import { onInterrupt } from './interrupt';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

const FULL_ID = /^[0-9a-f]{32}$/;

/** A full container id from a unique prefix of one (docker accepts any unique prefix). */
export async function resolveContainerId(api: ApiClient, prefix: string): Promise<string> {
  if (FULL_ID.test(prefix)) {
    return prefix;
  }
  const matches = (await api.listContainers()).filter((c) => c.id.startsWith(prefix));
  if (matches.length === 1) {
    return matches[0].id;
  }
  throw new ApiError(
    404,
    'CONTAINER_UNKNOWN',
    matches.length === 0 ? `No such container: ${prefix}` : `Multiple containers match "${prefix}"`,
  );
}

/** `docker ps`'s STATUS: `Up 3 seconds`, `Exited (0) 2 minutes ago`, `Created`. */
export function containerStatus(c: ContainerRecord, now: number = Date.now()): string {
  switch (c.state) {
    case 'created':
      return 'Created';
    case 'running':
      return `Up ${humanDuration(now - Date.parse(c.startedAt ?? c.createdAt))}`;
    case 'exited':
      return `Exited (${c.exitCode ?? (c.signal !== null ? c.signal : -1)}) ${ago(c.finishedAt, now)}`;
    case 'removed':
      return 'Removed';
  }
}

export function psTable(containers: readonly ContainerRecord[], noTrunc: boolean, now?: number): string {
  return table([
    ['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS'],
    ...containers.map((c) => [
      noTrunc ? c.id : c.id.slice(0, 12),
      c.image,
      quotedCommand(c.command, !noTrunc),
      ago(c.createdAt, now),
      containerStatus(c, now),
    ]),
  ]);
}

/** Prints what was added to a container's logs since the last call (the record keeps their tail). */
class LogPrinter {
  private seen = { stdout: 0, stderr: 0 };

  constructor(private readonly ctx: CliContext) {}

  print(c: ContainerRecord): void {
    const { stdout, stderr } = c.logs;
    // A tail that moved past what we printed (truncated) restarts from its beginning.
    const from = (text: string, at: number): string => (text.length >= at ? text.slice(at) : text);
    const o = from(stdout, this.seen.stdout);
    const e = from(stderr, this.seen.stderr);
    if (o !== '') {
      this.ctx.out(o);
    }
    if (e !== '') {
      this.ctx.err(e);
    }
    this.seen = { stdout: stdout.length, stderr: stderr.length };
  }
}

/** Polls a container until it exits (or `stopped()`), printing its output; returns the last record. */
async function followContainer(
  api: ApiClient,
  ctx: CliContext,
  id: string,
  stopped: () => boolean,
  print: boolean,
): Promise<ContainerRecord> {
  const printer = new LogPrinter(ctx);
  for (;;) {
    const c = await api.getContainer(id);
    if (print) {
      printer.print(c);
    }
    if (c.state === 'exited' || c.state === 'removed' || stopped()) {
      return c;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

export function registerContainerCommands(program: Command, ctx: CliContext): void {
  const { out } = ctx;

  program
    .command('run')
    .description('Run a command in a new container (kept after it exits, for diff and commit)')
    .argument('<image>', 'repo[:tag] or repo@sha256:…')
    .argument('[command...]', "replaces the image's CMD")
    .passThroughOptions()
    .option('-d, --detach', 'print the container id and return', false)
    .option('--rm', 'remove the container when it exits', false)
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable)', collect, [])
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <user>', 'user[:group] or uid[:gid]')
    .addOption(
      new Option('--network <mode>', "network (default: the service's, sandbox)").choices([
        'sandbox',
        'none',
        'host',
      ]),
    )
    .action(
      async (
        image: string,
        command: string[],
        o: {
          detach: boolean;
          rm: boolean;
          env: string[];
          workdir?: string;
          user?: string;
          network?: 'sandbox' | 'none' | 'host';
        },
      ) => {
        const api = ctx.client();
        const { id } = await api.createContainer({
          image,
          cmd: command,
          env: o.env,
          ...(o.network !== undefined ? { network: o.network } : {}),
          ...(o.workdir !== undefined ? { workdir: o.workdir } : {}),
          ...(o.user !== undefined ? { user: o.user } : {}),
        });
        if (o.detach) {
          out(`${id}\n`);
          return;
        }
        let stop = false;
        const off = onInterrupt(() => {
          stop = true;
          ctx.err(
            `\nstopped following (Ctrl-C): container ${id} keeps running (the API has no stop); stratum logs -f ${id.slice(0, 12)}\n`,
          );
        });
        let c: ContainerRecord;
        try {
          c = await followContainer(api, ctx, id, () => stop, true);
        } finally {
          off();
        }
        if (stop) {
          process.exitCode = 130;
          return;
        }
        if (c.error !== null && c.exitCode === null) {
          ctx.err(`stratum: container ${id.slice(0, 12)}: ${c.error}\n`);
        }
        if (o.rm) {
          await api.removeContainer(id);
        }
        process.exitCode = c.exitCode ?? 125;
      },
    );

  program
    .command('ps')
    .description('List containers (running ones; -a: all)')
    .option('-a, --all', 'show all containers', false)
    .option('-q, --quiet', 'only ids', false)
    .option('--no-trunc', 'do not truncate output')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (o: { all: boolean; quiet: boolean; trunc: boolean; format: OutputFormat }) => {
      const all = await ctx.client().listContainers();
      const shown = all.filter((c) => o.all || c.state === 'running' || c.state === 'created');
      if (o.format === 'json') {
        out(json(shown));
        return;
      }
      if (o.quiet) {
        out(shown.map((c) => `${o.trunc ? c.id.slice(0, 12) : c.id}\n`).join(''));
        return;
      }
      out(psTable(shown, !o.trunc));
    });

  program
    .command('rm')
    .description('Remove containers and their changes')
    .argument('<container...>', 'container ids (or unique prefixes)')
    .action(async (ids: string[]) => {
      const api = ctx.client();
      let failed = false;
      for (const given of ids) {
        try {
          await api.removeContainer(await resolveContainerId(api, given));
          out(`${given}\n`);
        } catch (e) {
          if (!(e instanceof ApiError)) {
            throw e;
          }
          ctx.err(`Error response from daemon: ${e.message}\n`);
          failed = true;
        }
      }
      if (failed) {
        process.exitCode = 1;
      }
    });

  program
    .command('commit')
    .description("Create a new image from a container's changes")
    .argument('<container>', 'container id (or unique prefix)')
    .argument('<repository[:tag]>', 'the new image')
    .option('-m, --message <message>', 'commit message', '')
    .option('-a, --author <author>', 'author (e.g. "Jane <jane@example.com>")', '')
    .option('-c, --change <instruction>', 'apply a Dockerfile instruction (repeatable)', collect, [])
    .action(async (given: string, name: string, o: { message: string; author: string; change: string[] }) => {
      const api = ctx.client();
      const id = await resolveContainerId(api, given);
      const { repository, tag } = splitTag(name);
      const { commitId } = await api.commitContainer(id, {
        repository,
        tag,
        message: o.message,
        author: o.author,
        changes: o.change,
      });
      for (;;) {
        const c = (await api.getContainer(id)).commits.find((x) => x.id === commitId);
        if (c === undefined) {
          throw new ApiError(0, 'INTERNAL', `commit ${commitId} is not on container ${id}`);
        }
        if (c.state === 'succeeded') {
          out(`${c.imageDigest ?? ''}\n`);
          return;
        }
        if (c.state === 'failed') {
          throw new ApiError(0, 'COMMIT_FAILED', `commit failed: ${c.error ?? 'unknown error'}`);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    });

  program
    .command('diff')
    .description("List the changes of a container's filesystem: A added, C changed, D deleted")
    .argument('<container>', 'container id (or unique prefix)')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (given: string, o: { format: OutputFormat }) => {
      const api = ctx.client();
      const id = await resolveContainerId(api, given);
      const changes = await api.containerChanges(id);
      if (changes.changes === null) {
        throw new ApiError(
          409,
          'CONTAINER_STATE',
          `container ${given} has not exited yet: its changes are read when it does`,
        );
      }
      if (o.format === 'json') {
        out(json(changes));
        return;
      }
      out(changes.changes.map((c) => `${c.kind} ${c.path}\n`).join(''));
      if (changes.truncated) {
        ctx.err(`(more changes than the ${changes.changes.length} kept)\n`);
      }
    });
}

/** `stratum logs ID` of a container (a build's log is the build command's business). */
export async function containerLogs(ctx: CliContext, given: string, follow: boolean): Promise<void> {
  const api = ctx.client();
  const id = await resolveContainerId(api, given);
  if (!follow) {
    const c = await api.getContainer(id);
    ctx.out(c.logs.stdout);
    ctx.err(c.logs.stderr);
    return;
  }
  let stop = false;
  const off = onInterrupt(() => {
    stop = true;
  });
  try {
    await followContainer(api, ctx, id, () => stop, true);
  } finally {
    off();
  }
}
