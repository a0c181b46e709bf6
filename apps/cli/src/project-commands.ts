import { readFileSync, statSync } from 'node:fs';
import { Command } from 'commander';
import { ApiError } from './api-client';
import { CliContext } from './cli-context';
import { parseSecrets, parseSsh } from './secret-specs';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Largest known_hosts text `--ssh-known-hosts` reads (the server refuses larger ones too). */
const MAX_KNOWN_HOSTS_BYTES = 64 * 1024;

/**
 * The text of `--ssh-known-hosts FILE` (`-`: stdin, as `stratum import -`), read before anything
 * is sent; the server checks its lines (a 400 naming the first bad one).
 */
async function readKnownHosts(file: string): Promise<string> {
  const tooLarge = (): ApiError =>
    new ApiError(
      0,
      'BAD_REQUEST',
      `--ssh-known-hosts: ${file} is larger than ${MAX_KNOWN_HOSTS_BYTES} bytes`,
    );
  if (file === '-') {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of process.stdin) {
      size += (chunk as Buffer).length;
      if (size > MAX_KNOWN_HOSTS_BYTES) {
        throw tooLarge();
      }
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks).toString('utf8');
  }
  let st;
  try {
    st = statSync(file);
  } catch {
    throw new ApiError(0, 'BAD_REQUEST', `--ssh-known-hosts: cannot read ${file}`);
  }
  if (!st.isFile()) {
    throw new ApiError(0, 'BAD_REQUEST', `--ssh-known-hosts: ${file} is not a file`);
  }
  if (st.size > MAX_KNOWN_HOSTS_BYTES) {
    throw tooLarge();
  }
  return readFileSync(file, 'utf8');
}

/**
 * `stratum projects secrets ls|set|rm`: the secrets and ssh deploy keys a project's git-triggered
 * builds get (values are sent once and never shown again; ssh keys show their public half), and
 * with `set --ssh-known-hosts` the host keys its ssh fetches check the server against.
 */
export function registerProjectCommands(program: Command, ctx: CliContext): void {
  const { out } = ctx;
  const secrets = program
    .command('projects')
    .description('Projects: git repositories whose pushes build images')
    .command('secrets')
    .description(
      "A project's build secrets and ssh deploy keys (for builds of its pushes, schedule and triggers)",
    );

  secrets
    .command('ls')
    .description('Secret names and ssh keys of a project (never the values)')
    .argument('<project>')
    .action(async (project: string) => {
      const got = await ctx.client().projectSecrets(project);
      const rows = [
        ...got.secrets.map((id) => `secret  ${id}\n`),
        ...got.ssh.flatMap((s) => s.publicKeys.map((k) => `ssh     ${s.id}  ${k}\n`)),
      ];
      out(rows.join(''));
    });

  secrets
    .command('set')
    .description(
      'Set secrets (as build --secret), ssh keys (as build --ssh) and the ssh known hosts of a project',
    )
    .argument('<project>')
    .option(
      '--secret <id=ID,src=FILE|env=VAR>',
      'a secret for RUN --mount=type=secret (repeatable)',
      collect,
      [],
    )
    .option('--ssh <id=KEYFILE[,KEYFILE]>', 'a deploy key for RUN --mount=type=ssh (repeatable)', collect, [])
    .option(
      '--ssh-known-hosts <file>',
      "known_hosts lines (ssh-keyscan HOST, checked out of band) the host key of the project's ssh repository must match; replaces its sshKnownHosts; - reads stdin",
    )
    .action(async (project: string, o: { secret: string[]; ssh: string[]; sshKnownHosts?: string }) => {
      const api = ctx.client();
      const values = parseSecrets(o.secret, api.config.environment ?? {});
      const keys = parseSsh(o.ssh);
      const knownHosts = o.sshKnownHosts === undefined ? null : await readKnownHosts(o.sshKnownHosts);
      if (values.size + keys.size === 0 && knownHosts === null) {
        throw new ApiError(0, 'BAD_REQUEST', 'give at least one --secret, --ssh or --ssh-known-hosts');
      }
      if (knownHosts !== null) {
        // First: lines the server refuses change nothing else.
        const view = await api.updateProject(project, { sshKnownHosts: knownHosts });
        const lines = (view.sshKnownHosts ?? '')
          .split('\n')
          .filter((l) => l.trim() !== '' && !l.trim().startsWith('#')).length;
        out(`ssh known hosts set: ${lines} line${lines === 1 ? '' : 's'}\n`);
      }
      for (const [id, value] of values) {
        await api.setProjectSecret(project, 'secret', id, [value]);
        out(`secret ${id} set\n`);
      }
      for (const [id, k] of keys) {
        const set = (await api.setProjectSecret(project, 'ssh', id, k)) as { publicKeys: string[] };
        out(`ssh ${id} set: ${set.publicKeys.join(', ')}\n`);
      }
    });

  secrets
    .command('rm')
    .description('Remove a secret (or with --ssh, an ssh key) of a project')
    .argument('<project>')
    .argument('<id>')
    .option('--ssh', 'the id is an ssh key id', false)
    .action(async (project: string, id: string, o: { ssh: boolean }) => {
      await ctx.client().removeProjectSecret(project, o.ssh ? 'ssh' : 'secret', id);
      out(`${o.ssh ? 'ssh' : 'secret'} ${id} removed\n`);
    });
}
