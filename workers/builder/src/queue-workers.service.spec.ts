import { JobName, JobResultMap } from '@stratum/contracts';
import { JobHandler } from './job-handler';
import { routeHandlers } from './queue-workers.service';

const handler = (name: JobName): JobHandler => ({
  name,
  handle: async () => ({}) as JobResultMap[typeof name],
});

/** Every job a build worker handles (the API consumes the outgoing queue). */
const all = (): JobHandler[] =>
  Object.values(JobName)
    .filter((n) => n !== JobName.CommitStatus && n !== JobName.Notify)
    .map(handler);
const P = ['linux/amd64'];

describe('routeHandlers', () => {
  it("routes shared queues and this worker's own commit queue", () => {
    const routes = routeHandlers(all(), 'host-1', P);
    expect([...routes.keys()].sort()).toEqual([
      'build',
      'build.linux-amd64',
      'commit',
      'commit.host-1',
      'push',
    ]);
    expect([...(routes.get('commit')?.keys() ?? [])]).toEqual([JobName.RunContainer]);
    expect([...(routes.get('commit.host-1')?.keys() ?? [])].sort()).toEqual([
      JobName.Commit,
      JobName.RemoveContainer,
    ]);
  });

  it('refuses a job name with no handler or two', () => {
    const missing = all().filter((h) => h.name !== JobName.RemoveContainer);
    expect(() => routeHandlers(missing, 'h', P)).toThrow(
      /job "remove-container" of queue "commit.h" has 0 handlers/,
    );
    expect(() => routeHandlers([...all(), handler(JobName.Commit)], 'h', P)).toThrow(
      /job "commit" of queue "commit.h" has 2 handlers/,
    );
  });

  it('refuses to run containers without committing and removing them (and the reverse)', () => {
    const runsOnly = [handler(JobName.Build), handler(JobName.RunContainer)];
    expect(() => routeHandlers(runsOnly, 'h')).toThrow(/must be served together/);
    const commitsOnly = [handler(JobName.Commit), handler(JobName.RemoveContainer)];
    expect(() => routeHandlers(commitsOnly, 'h')).toThrow(/must be served together/);
    // Outgoing calls are the API's: a worker handler for them belongs to no queue it serves.
    expect(() => routeHandlers([handler(JobName.CommitStatus)], 'h')).toThrow(
      /handler for "commit-status" belongs to no queue/,
    );
    expect([...routeHandlers([handler(JobName.Build)], 'h').keys()]).toEqual(['build']);
  });

  it('serves the queue of each platform it builds for, and needs a platform for build-platform jobs', () => {
    const routes = routeHandlers(all(), 'h', ['linux/amd64', 'linux/arm/v7']);
    expect([...(routes.get('build.linux-arm-v7')?.keys() ?? [])]).toEqual([JobName.BuildPlatform]);
    expect(routes.has('build.linux-arm64')).toBe(false);
    expect(() => routeHandlers(all(), 'h')).toThrow(/handler for "build-platform" belongs to no queue/);
  });

  it('refuses a worker id that cannot name a queue', () => {
    expect(() => routeHandlers(all(), 'host:1', P)).toThrow(/cannot name a queue/);
  });
});
