import { execFile } from 'node:child_process';
import { dirname } from 'node:path';
import { CLI_BIN } from './worker-process';

export interface CliResult {
  /** Exit status; null when killed (the timeout). */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CliRunOptions {
  /** STRATUM_URL of the API under test. */
  readonly url: string;
  /** More environment (HOME, STRATUM_TOKEN, …); nothing else of the test's is passed on. */
  readonly env?: Record<string, string>;
  /** Standard input (default: empty, closed). */
  readonly input?: string;
  /** SIGKILL after this long (default 60 s). */
  readonly timeoutMs?: number;
}

/**
 * Runs the `stratum` command as a user does (its launcher, then the compiled CLI) with this
 * Node on the PATH; resolves with its exit status and output, whatever the status.
 */
export function runCli(args: string[], options: CliRunOptions): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      CLI_BIN,
      args,
      {
        env: {
          PATH: `${dirname(process.execPath)}:${process.env.PATH}`,
          STRATUM_URL: options.url,
          ...options.env,
        },
        timeout: options.timeoutMs ?? 60_000,
        killSignal: 'SIGKILL',
      },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(options.input ?? '');
  });
}
