import { ChildProcess, spawn } from 'node:child_process';
import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { STRATUM_CONFIG, StratumConfig } from '@stratum/config';
import { workerPaths } from './host-sweeper';

/**
 * Kills this worker's containers when the worker process dies, however it dies (SIGKILL, OOM,
 * a crash): a RUN step must never go on running on a host whose worker is gone while another
 * worker runs the same step again (issue 20). Node cannot set PR_SET_PDEATHSIG on its
 * children, and `runc run` leaves the container running when it is killed itself, so a small
 * shell process in a session of its own holds the read end of a pipe from the worker: the
 * kernel closes the worker's end when the worker exits, `read` returns, and the shell runs
 * `runc delete --force` on every container in this worker's runc root. The start-up sweep
 * (HostSweeper) still removes what is left (mounts, job dirs) when the worker comes back.
 */
@Injectable()
export class DeathWatch implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('DeathWatch');
  private child: ChildProcess | null = null;

  constructor(@Inject(STRATUM_CONFIG) private readonly config: StratumConfig) {}

  onApplicationBootstrap(): void {
    const root = workerPaths(this.config).runcRoot;
    const script =
      'read -r _ ; ' +
      'for id in $("$0" --root "$1" list -q 2>/dev/null); do "$0" --root "$1" delete --force "$id" >/dev/null 2>&1; done';
    const child = spawn('/bin/sh', ['-c', script, this.config.runtimePath, root], {
      detached: true, // its own session: a terminal's Ctrl-C to the worker's group does not end it first
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    child.on('error', (err) => this.logger.error(`death watch could not start: ${err.message}`));
    child.unref();
    // The pipe must not keep the event loop alive either; it closes when the process exits.
    (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    this.child = child;
    this.logger.log(`containers in ${root} are killed if this worker dies (watch pid ${child.pid ?? '?'})`);
  }

  onApplicationShutdown(): void {
    // A clean exit: the builds ended (or their jobs were handed back); the watch may sweep now.
    this.child?.stdin?.end();
    this.child = null;
  }
}
