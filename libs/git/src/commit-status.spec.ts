import { GitForge } from '@stratum/contracts';
import { commitStateOf, commitStatusRequest, defaultForgeTarget } from './commit-status';

const sha = 'b'.repeat(40);
const status = {
  state: 'failure' as const,
  context: 'stratum/app',
  targetUrl: 'https://ci.example.com/#/builds/1',
  description: 'x'.repeat(300),
  ref: 'main',
};

describe('commitStatusRequest', () => {
  it('GitHub: POST /repos/{owner}/{repo}/statuses/{sha}, Bearer, description cut to 140', () => {
    const r = commitStatusRequest(
      { forge: GitForge.GitHub, apiUrl: 'https://api.github.com/', repository: 'acme/app' },
      sha,
      status,
      'T',
    );
    expect(r.url).toBe(`https://api.github.com/repos/acme/app/statuses/${sha}`);
    expect(r.headers.Authorization).toBe('Bearer T');
    expect(JSON.parse(r.body)).toEqual({
      state: 'failure',
      target_url: status.targetUrl,
      description: 'x'.repeat(140),
      context: 'stratum/app',
    });
  });

  it('GitLab: the project path URL-encoded as one id, its own state names, name and ref', () => {
    const r = commitStatusRequest(
      { forge: GitForge.GitLab, apiUrl: 'https://gl.example.com/api/v4', repository: 'g/sub/app' },
      sha,
      status,
      'T',
    );
    expect(r.url).toBe(`https://gl.example.com/api/v4/projects/g%2Fsub%2Fapp/statuses/${sha}`);
    expect(r.headers['PRIVATE-TOKEN']).toBe('T');
    expect(JSON.parse(r.body)).toMatchObject({ state: 'failed', name: 'stratum/app', ref: 'main' });
    const cancelled = commitStatusRequest(
      { forge: GitForge.GitLab, apiUrl: 'https://gl.example.com/api/v4', repository: '42' },
      sha,
      { ...status, state: commitStateOf('cancelled') },
      'T',
    );
    expect(JSON.parse(cancelled.body)).toMatchObject({ state: 'canceled' });
  });

  it('Gitea: Authorization: token', () => {
    const r = commitStatusRequest(
      { forge: GitForge.Gitea, apiUrl: 'https://gitea.example.com/api/v1', repository: 'o/r' },
      sha,
      status,
      'T',
    );
    expect(r.url).toBe(`https://gitea.example.com/api/v1/repos/o/r/statuses/${sha}`);
    expect(r.headers.Authorization).toBe('token T');
  });
});

describe('defaultForgeTarget', () => {
  it('derives each forge’s API base and the repository from the clone URL', () => {
    expect(defaultForgeTarget(GitForge.GitHub, 'git@github.com:acme/app.git')).toEqual({
      apiUrl: 'https://api.github.com',
      repository: 'acme/app',
    });
    expect(defaultForgeTarget(GitForge.GitHub, 'https://ghe.example.com/acme/app.git')?.apiUrl).toBe(
      'https://ghe.example.com/api/v3',
    );
    expect(defaultForgeTarget(GitForge.GitLab, 'https://gitlab.com/g/sub/app.git')).toEqual({
      apiUrl: 'https://gitlab.com/api/v4',
      repository: 'g/sub/app',
    });
    expect(defaultForgeTarget(GitForge.Gitea, 'https://git.example.com/o/r')?.apiUrl).toBe(
      'https://git.example.com/api/v1',
    );
    expect(defaultForgeTarget(GitForge.GitHub, 'file:///x.git')).toBeNull();
  });

  it('maps build states to commit states', () => {
    expect(
      ['queued', 'running', 'succeeded', 'failed', 'cancelled'].map((s) => commitStateOf(s as never)),
    ).toEqual(['pending', 'pending', 'success', 'failure', 'error']);
    // GitLab's status API has `running` (sent as is); GitHub and Gitea stay pending.
    expect(commitStateOf('running', GitForge.GitLab)).toBe('running');
    expect(commitStateOf('running', GitForge.GitHub)).toBe('pending');
    const gl = commitStatusRequest(
      { forge: GitForge.GitLab, apiUrl: 'https://gitlab.example.com/api/v4', repository: 'g/app' },
      sha,
      { ...status, state: 'running' },
      'T',
    );
    expect(JSON.parse(gl.body)).toMatchObject({ state: 'running' });
    const gh = commitStatusRequest(
      { forge: GitForge.GitHub, apiUrl: 'https://api.github.com', repository: 'o/r' },
      sha,
      { ...status, state: 'running' },
      'T',
    );
    expect(JSON.parse(gh.body)).toMatchObject({ state: 'pending' });
  });
});
