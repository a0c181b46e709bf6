import { Command, Option } from 'commander';
import type { WorkerView } from '@stratum/contracts';
import { CliContext, OutputFormat } from './cli-context';
import { ago, json, table } from './format';

/** `stratum workers ls`: one row per worker, live or gone, with what a gone one left. */
export function workersTable(workers: readonly WorkerView[], now?: number): string {
  return table([
    ['WORKER', 'STATUS', 'CONTAINERS', 'PENDING JOBS', 'PLATFORMS'],
    ...workers.map((w) => [
      w.id,
      w.live ? 'live' : `gone since ${ago(w.goneSince, now)}`,
      String(w.containers.length),
      String(w.pendingJobs),
      w.platforms.join(',') || '-',
    ]),
  ]);
}

export function registerWorkerCommands(program: Command, ctx: CliContext): void {
  const workers = program
    .command('workers')
    .description('Build workers (hosts), live and gone, and what a gone one left behind');
  workers
    .command('ls')
    .description('List workers: live ones, and gone ones with the containers and queued jobs they hold')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (o: { format: OutputFormat }) => {
      const list = await ctx.client().listWorkers();
      ctx.out(o.format === 'json' ? json(list) : workersTable(list));
    });
  workers
    .command('rm')
    .description(
      'Forget a worker that will not return: its containers are removed, its queued jobs dropped (refused while it is live)',
    )
    .argument('<worker-id>')
    .action(async (id: string) => {
      const r = await ctx.client().removeWorker(id);
      ctx.out(`${r.id}: ${r.containers} container(s) removed, ${r.jobs} queued job(s) dropped\n`);
    });
}
