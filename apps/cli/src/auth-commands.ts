import { Command } from 'commander';
import { ApiClient, ApiError } from './api-client';
import { CliContext } from './cli-context';
import { CredentialStore } from './credentials';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** The key a server's credentials are kept under: the Stratum URL itself, or a registry host. */
export function serverKey(given: string | undefined, stratumUrl: string): { key: string; stratum: boolean } {
  if (given === undefined || given === '') {
    return { key: stratumUrl, stratum: true };
  }
  const url = /^https?:\/\//.test(given) ? new URL(given) : null;
  const host = url !== null ? url.host : given.replace(/\/+$/, '');
  return host === new URL(stratumUrl).host
    ? { key: stratumUrl, stratum: true }
    : { key: host, stratum: false };
}

function store(ctx: CliContext): CredentialStore {
  const s = ctx.credentials();
  if (s === null) {
    throw new ApiError(0, 'BAD_REQUEST', 'no config directory: set HOME or XDG_CONFIG_HOME');
  }
  return s;
}

/**
 * Checks credentials against Stratum the way it authenticates: the REST API takes an API token
 * of API_TOKENS as Bearer (when API_AUTH=true); the registry's token endpoint takes
 * REGISTRY_USERS passwords and API tokens as Basic. Throws UNAUTHORIZED when it refuses them.
 */
async function verifyStratum(ctx: CliContext, username: string, secret: string): Promise<void> {
  const api = new ApiClient(ctx.client().config, null);
  const probe = '/api/v1/builds?offset=0&limit=1';
  if ((await api.status('GET', probe)) === 401) {
    if ((await api.status('GET', probe, { authorization: `Bearer ${secret}` })) !== 200) {
      throw new ApiError(
        401,
        'UNAUTHORIZED',
        'login refused: the API takes an API token (API_TOKENS) as the password',
      );
    }
    return;
  }
  const basic = Buffer.from(`${username}:${secret}`).toString('base64');
  if ((await api.status('GET', '/v2/token', { authorization: `Basic ${basic}` })) === 401) {
    throw new ApiError(401, 'UNAUTHORIZED', 'login refused: unknown user name or wrong password');
  }
}

export function registerAuthCommands(program: Command, ctx: CliContext): void {
  program
    .command('login')
    .description('Keep credentials for Stratum (default) or another registry (for push and pull)')
    .argument('[server]', 'the Stratum URL (default: STRATUM_URL) or a registry host[:port]')
    .option('-u, --username <name>', 'user name (any name with an API token)')
    .option('-p, --password <password>', 'password or API token (prefer --password-stdin)')
    .option('--password-stdin', 'read the password from stdin', false)
    .action(
      async (
        server: string | undefined,
        o: { username?: string; password?: string; passwordStdin: boolean },
      ) => {
        if (o.username === undefined || o.username === '') {
          throw new ApiError(0, 'BAD_REQUEST', 'a user name is required: -u NAME');
        }
        if (o.password !== undefined && o.passwordStdin) {
          throw new ApiError(0, 'BAD_REQUEST', '--password and --password-stdin are mutually exclusive');
        }
        const secret = o.passwordStdin ? await readStdin() : (o.password ?? '');
        if (secret === '') {
          throw new ApiError(0, 'BAD_REQUEST', 'a password is required: --password-stdin or -p');
        }
        const { key, stratum } = serverKey(server, ctx.client().config.serverUrl);
        if (stratum) {
          await verifyStratum(ctx, o.username, secret);
        }
        const s = store(ctx);
        s.set(key, { username: o.username, secret });
        ctx.out(
          stratum
            ? 'Login Succeeded\n'
            : `Credentials saved for ${key} (sent with pushes to and pulls from it)\n`,
        );
      },
    );

  program
    .command('logout')
    .description('Forget the credentials kept for a server')
    .argument('[server]', 'the Stratum URL (default) or a registry host[:port]')
    .action((server: string | undefined) => {
      const { key } = serverKey(server, ctx.client().config.serverUrl);
      const removed = store(ctx).remove(key);
      ctx.out(removed ? `Removing login credentials for ${key}\n` : `Not logged in to ${key}\n`);
    });
}
