import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsRepositoryStore } from './fs-repository-store';
import { ImmutableTagsRepositoryStore } from './immutable-tags';
import { RepositoryEvent, RepositoryEventsStore } from './repository-events';

const A = `sha256:${'a'.repeat(64)}` as const;
const B = `sha256:${'b'.repeat(64)}` as const;

describe('RepositoryEventsStore', () => {
  let root: string;
  let events: RepositoryEvent[];
  let store: RepositoryEventsStore;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'stratum-repo-events-'));
    events = [];
    const inner = new ImmutableTagsRepositoryStore(new FsRepositoryStore(root), [
      { repository: 'app', tag: 'v*' },
    ]);
    store = new RepositoryEventsStore(inner, {
      repositoryChanged: (e) => {
        events.push(e);
        return Promise.resolve();
      },
    });
  });

  afterEach(() => rm(root, { recursive: true, force: true }));

  it('tells of each tag set, tag deleted (with the digest it named) and manifest unlinked', async () => {
    await store.linkManifest('app', A);
    await store.linkManifest('app', B);
    expect(events).toEqual([]); // linking a manifest is not a push: its tag is
    await store.setTag('app', 'main', A);
    await store.setTag('app', 'main', B);
    expect(await store.deleteTag('app', 'main')).toBe(true);
    expect(await store.deleteTag('app', 'main')).toBe(false); // gone: nothing to tell
    expect(await store.unlinkManifest('app', A)).toBe(true);
    expect(events).toEqual([
      { action: 'push', repository: 'app', tag: 'main', digest: A },
      { action: 'push', repository: 'app', tag: 'main', digest: B },
      { action: 'delete', repository: 'app', tag: 'main', digest: B },
      { action: 'delete', repository: 'app', tag: null, digest: A },
    ]);
  });

  it('a refused write (immutable tag) tells nothing, and isImmutable passes through', async () => {
    await store.linkManifest('app', A);
    await store.setTag('app', 'v1', A);
    await expect(store.setTag('app', 'v1', B)).rejects.toThrow(/immutable/);
    await expect(store.deleteTag('app', 'v1')).rejects.toThrow(/immutable/);
    expect(store.isImmutable('app', 'v1')).toBe(true);
    expect(events).toEqual([{ action: 'push', repository: 'app', tag: 'v1', digest: A }]);
  });
});
