import { Command } from 'commander';
import { ApiError } from './api-client';
import { CliContext } from './cli-context';
import { table } from './format';

/** `30d`, `12h`, `90m`, `3600s` or plain seconds -> seconds. */
export function parseExpiry(value: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(value.trim());
  if (m === null) {
    throw new ApiError(
      0,
      'BAD_REQUEST',
      `--expires ${JSON.stringify(value)}: use e.g. 30d, 12h, 90m or seconds`,
    );
  }
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

/** `team/*=pull,push` -> a rule. */
export function parseAllow(value: string): { pattern: string; actions: string[] } {
  const eq = value.lastIndexOf('=');
  const actions = eq < 0 ? [] : value.slice(eq + 1).split(',');
  if (eq <= 0 || actions.some((a) => !['pull', 'push', 'delete'].includes(a))) {
    throw new ApiError(
      0,
      'BAD_REQUEST',
      `--allow ${JSON.stringify(value)}: use pattern=actions, e.g. team/*=pull,push`,
    );
  }
  return { pattern: value.slice(0, eq), actions };
}

export function registerRobotCommands(program: Command, ctx: CliContext): void {
  const robot = program
    .command('robot')
    .description('Robot accounts: scoped, expiring registry/API credentials');
  robot
    .command('create')
    .description('Create a robot account; its token is printed once (use it as the password of robot+NAME)')
    .argument('<name>', 'a-z, 0-9, _ and -')
    .requiredOption('--expires <duration>', 'how long it lives: 30d, 12h, 90m or seconds (at most 366d)')
    .option(
      '--allow <pattern=actions>',
      'repository pattern and actions (pull,push,delete); repeatable',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .action(async (name: string, o: { expires: string; allow: string[] }) => {
      if (o.allow.length === 0) {
        throw new ApiError(0, 'BAD_REQUEST', 'at least one --allow pattern=actions is required');
      }
      const made = await ctx
        .client()
        .createRobot({ name, expiresInSeconds: parseExpiry(o.expires), rules: o.allow.map(parseAllow) });
      ctx.out(`username: ${made.username}\ntoken:    ${made.token}\nexpires:  ${made.expiresAt}\n`);
      ctx.err('the token is shown this once: keep it now\n');
    });
  robot
    .command('ls')
    .description('List robot accounts')
    .action(async () => {
      const rows = (await ctx.client().listRobots()).map((r) => [
        r.username,
        r.rules.map((x) => `${x.pattern}=${x.actions.join(',')}`).join(' '),
        r.expiresAt,
        r.createdBy,
      ]);
      ctx.out(table([['USERNAME', 'ALLOWS', 'EXPIRES', 'CREATED BY'], ...rows]));
    });
  robot
    .command('rm')
    .description('Revoke a robot account (its token stops working at once)')
    .argument('<name>')
    .action(async (name: string) => {
      ctx.out(`${(await ctx.client().revokeRobot(name)).revoked}\n`);
    });
}
