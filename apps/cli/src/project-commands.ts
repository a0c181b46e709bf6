import { Command } from 'commander';
import { ApiError } from './api-client';
import { CliContext } from './cli-context';
import { parseSecrets, parseSsh } from './secret-specs';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * `stratum projects secrets ls|set|rm`: the secrets and ssh deploy keys a project's git-triggered
 * builds get (values are sent once and never shown again; ssh keys show their public half).
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
    .description('Set secrets (as build --secret) and ssh keys (as build --ssh) of a project')
    .argument('<project>')
    .option(
      '--secret <id=ID,src=FILE|env=VAR>',
      'a secret for RUN --mount=type=secret (repeatable)',
      collect,
      [],
    )
    .option('--ssh <id=KEYFILE[,KEYFILE]>', 'a deploy key for RUN --mount=type=ssh (repeatable)', collect, [])
    .action(async (project: string, o: { secret: string[]; ssh: string[] }) => {
      const api = ctx.client();
      const values = parseSecrets(o.secret, api.config.environment ?? {});
      const keys = parseSsh(o.ssh);
      if (values.size + keys.size === 0) {
        throw new ApiError(0, 'BAD_REQUEST', 'give at least one --secret or --ssh');
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
