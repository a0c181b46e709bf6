import { JobName, JobResultMap } from '@stratum/contracts';
import { JobHandler } from './job-handler';
import { routeHandlers } from './queue-workers.service';

const handler = (name: JobName): JobHandler => ({
  name,
  handle: async () => ({}) as JobResultMap[typeof name],
});

const all = (): JobHandler[] => Object.values(JobName).map(handler);

describe('routeHandlers', () => {
  it("routes shared queues and this worker's own commit queue", () => {
    const routes = routeHandlers(all(), 'host-1');
    expect([...routes.keys()].sort()).toEqual(['build', 'commit', 'commit.host-1', 'push']);
    expect([...(routes.get('commit')?.keys() ?? [])]).toEqual([JobName.RunContainer]);
    expect([...(routes.get('commit.host-1')?.keys() ?? [])].sort()).toEqual([
      JobName.Commit,
      JobName.RemoveContainer,
    ]);
  });

  it('refuses a job name with no handler or two', () => {
    const missing = all().filter((h) => h.name !== JobName.RemoveContainer);
    expect(() => routeHandlers(missing, 'h')).toThrow(
      /job "remove-container" of queue "commit.h" has 0 handlers/,
    );
    expect(() => routeHandlers([...all(), handler(JobName.Commit)], 'h')).toThrow(
      /job "commit" of queue "commit.h" has 2 handlers/,
    );
  });

  it('refuses to run containers without committing and removing them (and the reverse)', () => {
    const runsOnly = [handler(JobName.Build), handler(JobName.RunContainer)];
    expect(() => routeHandlers(runsOnly, 'h')).toThrow(/must be served together/);
    const commitsOnly = [handler(JobName.Commit), handler(JobName.RemoveContainer)];
    expect(() => routeHandlers(commitsOnly, 'h')).toThrow(/must be served together/);
    expect([...routeHandlers([handler(JobName.Build)], 'h').keys()]).toEqual(['build']);
  });

  it('refuses a worker id that cannot name a queue', () => {
    expect(() => routeHandlers(all(), 'host:1')).toThrow(/cannot name a queue/);
  });
});
