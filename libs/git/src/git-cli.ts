import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StratumError } from '@stratum/contracts';

/** Credentials for fetching over HTTP(S): sent as a Basic `Authorization` header. */
export interface GitCredentials {
  /** `x-access-token` (GitHub), `oauth2` (GitLab), a user name (Gitea); default `git`. */
  readonly username?: string;
  readonly token: string;
}

export interface GitCliOptions {
  /** The whole command is killed after this long. */
  readonly timeoutMs: number;
  /** Also allow `file://` repositories (off by default: a project must not read the API host's disk). */
  readonly allowFile: boolean;
  readonly credentials?: GitCredentials | null;
  /**
   * Only URLs below this prefix get {@link credentials} (`http.<prefix>.extraHeader`, git's URL
   * matching): a submodule on another host never sees a project's token. Absent: every URL.
   * https://git-scm.com/docs/git-config#Documentation/git-config.txt-httpltURLgt
   */
  readonly credentialScope?: string;
  /**
   * The transports git may use, when the caller keeps its own allowlist (ADD of a git source:
   * ADD_GIT_SCHEMES); absent: http, https, ssh, git, and file when {@link allowFile}.
   */
  readonly protocols?: readonly GitTransport[];
  /** `GIT_SSH_COMMAND` for ssh transports (a build's key); default: batch mode, no key of ours. */
  readonly sshCommand?: string;
  /**
   * For ssh transports (a project's deploy key): the private key(s), written 0600 into the
   * command's temporary HOME and removed with it, and the known_hosts lines the server's host
   * key must match (strictly; nothing of this host's ssh configuration is read).
   */
  readonly ssh?: GitSshIdentity;
}

/** A deploy key and the host keys it may be used with. */
export interface GitSshIdentity {
  /** OpenSSH private keys, unencrypted; none: host keys are still checked. */
  readonly keys: readonly Buffer[];
  /** OpenSSH known_hosts lines. */
  readonly knownHosts: string;
}

/** `'…'` for one shell word (git runs GIT_SSH_COMMAND through sh). */
function shellWord(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Writes `ssh`'s keys (0600) and known hosts into `home` and answers the GIT_SSH_COMMAND that
 * uses exactly them: no agent, no ~/.ssh or /etc/ssh configuration, strict host key checking.
 */
async function sshCommandFor(ssh: GitSshIdentity, home: string): Promise<string> {
  const dir = join(home, 'ssh');
  await mkdir(dir, { mode: 0o700 });
  const knownHosts = join(dir, 'known_hosts');
  await writeFile(knownHosts, ssh.knownHosts.endsWith('\n') ? ssh.knownHosts : `${ssh.knownHosts}\n`, {
    mode: 0o600,
  });
  const identities: string[] = [];
  for (const [i, key] of ssh.keys.entries()) {
    const file = join(dir, `id_${i}`);
    await writeFile(file, key, { mode: 0o600 });
    identities.push(`-o IdentityFile=${shellWord(file)}`);
  }
  return [
    'ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none',
    '-o StrictHostKeyChecking=yes -o CheckHostIP=no',
    `-o UserKnownHostsFile=${shellWord(knownHosts)} -o GlobalKnownHostsFile=/dev/null`,
    ...(identities.length > 0 ? identities : ['-o IdentityFile=none']),
  ].join(' ');
}

/** Transports git can be allowed to use (`protocol.<name>.allow`). */
export type GitTransport = 'https' | 'http' | 'ssh' | 'git' | 'file';

const SHA = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

/** True for a full commit id (SHA-1 or SHA-256). */
export function isCommitSha(sha: string): boolean {
  return SHA.test(sha);
}

/**
 * Runs git with nothing of the host's configuration and nothing that executes code from the
 * repository: no system or global config (HOME is an empty temp dir), hooks pointed at
 * /dev/null, an empty template dir, no prompts, only the allowed transports (`protocol.allow`
 * also covers redirects and submodules), and credentials passed in the environment
 * (GIT_CONFIG_COUNT…), never on the command line where `ps` shows them.
 * https://git-scm.com/docs/git-config#Documentation/git-config.txt-protocolallow
 */
export class GitCli {
  constructor(private readonly options: GitCliOptions) {}

  /** Runs `git args…` in `cwd`; resolves with stdout, rejects with GIT_FETCH_FAILED and stderr. */
  async run(args: readonly string[], cwd: string, signal?: AbortSignal): Promise<string> {
    const home = await mkdtemp(join(tmpdir(), 'stratum-git-home-'));
    try {
      const sshCommand =
        this.options.ssh !== undefined
          ? await sshCommandFor(this.options.ssh, home)
          : this.options.sshCommand;
      return await this.spawn(args, cwd, home, sshCommand, signal);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  }

  private environment(home: string, sshCommand: string | undefined): NodeJS.ProcessEnv {
    const allowed = new Set<GitTransport>(
      this.options.protocols ?? [
        'https',
        'http',
        'ssh',
        'git',
        ...(this.options.allowFile ? ['file' as const] : []),
      ],
    );
    const transports: GitTransport[] = ['https', 'http', 'ssh', 'git', 'file'];
    const config: [string, string][] = [
      ['core.hooksPath', '/dev/null'],
      // No template in any repository git makes (a submodule's clone too): no sample hooks.
      ['init.templateDir', ''],
      ['protocol.allow', 'never'],
      ...transports.map((t): [string, string] => [
        `protocol.${t}.allow`,
        allowed.has(t) ? 'always' : 'never',
      ]),
      ['advice.detachedHead', 'false'],
      ['init.defaultBranch', 'main'],
      ['core.askPass', ''],
      ['credential.helper', ''],
    ];
    const creds = this.options.credentials;
    if (creds) {
      const basic = Buffer.from(`${creds.username ?? 'git'}:${creds.token}`).toString('base64');
      const key =
        this.options.credentialScope !== undefined
          ? `http.${this.options.credentialScope}.extraHeader`
          : 'http.extraHeader';
      config.push([key, `Authorization: Basic ${basic}`]);
    }
    const env: NodeJS.ProcessEnv = {
      PATH: '/usr/local/bin:/usr/bin:/bin',
      HOME: home,
      XDG_CONFIG_HOME: home,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_TERMINAL_PROMPT: '0',
      GIT_ASKPASS: '/bin/false',
      SSH_ASKPASS: '/bin/false',
      GIT_SSH_COMMAND: sshCommand ?? 'ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new',
      GIT_CONFIG_COUNT: String(config.length),
      LC_ALL: 'C',
    };
    config.forEach(([k, v], i) => {
      env[`GIT_CONFIG_KEY_${i}`] = k;
      env[`GIT_CONFIG_VALUE_${i}`] = v;
    });
    return env;
  }

  private spawn(
    args: readonly string[],
    cwd: string,
    home: string,
    sshCommand: string | undefined,
    signal?: AbortSignal,
  ): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn('git', args, {
        cwd,
        env: this.environment(home, sshCommand),
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      const out: Buffer[] = [];
      let err = '';
      let reason: string | null = null;
      const kill = (why: string): void => {
        reason = why;
        try {
          // The whole group: git forks git-remote-https, ssh, upload-pack…
          process.kill(-(child.pid ?? 0), 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      };
      const timer = setTimeout(
        () => kill(`timed out after ${this.options.timeoutMs / 1000} s`),
        this.options.timeoutMs,
      );
      const onAbort = (): void => kill('cancelled');
      signal?.addEventListener('abort', onAbort);
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.stderr.on('data', (c: Buffer) => {
        if (err.length < 16_384) {
          err += c.toString();
        }
      });
      child.on('error', (e) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        reject(new StratumError('GIT_FETCH_FAILED', `git could not start: ${e.message}`));
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (code === 0 && reason === null) {
          resolve(Buffer.concat(out).toString());
          return;
        }
        const what = reason ?? `exited with ${code}`;
        reject(
          new StratumError('GIT_FETCH_FAILED', `git ${args[0]} ${what}: ${redact(err.trim()).slice(-2000)}`),
        );
      });
    });
  }
}

/** Removes URL userinfo from git's messages. */
export function redact(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]+@/gi, '$1***@');
}
