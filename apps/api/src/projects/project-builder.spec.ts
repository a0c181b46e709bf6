import { branchMatches, renderTags } from './project-builder';

describe('renderTags', () => {
  const sha = '0123456789abcdef0123456789abcdef01234567';
  it('fills {repo} {branch} {tag} {pr} {sha} {shortsha} and {sha:N}', () => {
    expect(
      renderTags(['{repo}:{tag}', '{repo}:{tag}-{sha:7}', 'x/{repo}:{sha}'], {
        repo: 'app',
        sha,
        tag: 'v1.2.3',
      }),
    ).toEqual(['app:v1.2.3', 'app:v1.2.3-0123456', `x/app:${sha}`]);
    expect(
      renderTags(['{repo}:pr-{pr}', '{repo}:{branch}-{shortsha}'], {
        repo: 'app',
        sha,
        pr: 7,
        branch: 'feat/x',
      }),
    ).toEqual(['app:pr-7', 'app:feat-x-0123456']);
  });

  it('leaves out a template naming a value the build does not have, and duplicates', () => {
    expect(
      renderTags(['{repo}:{tag}', '{repo}:{branch}', '{repo}:{branch}'], {
        repo: 'app',
        sha,
        branch: 'main',
      }),
    ).toEqual(['app:main']);
  });
});

describe('branchMatches', () => {
  it('matches names and prefixes ending in *', () => {
    expect(branchMatches(['main', 'release-*'], 'release-1')).toBe(true);
    expect(branchMatches(['main', 'release-*'], 'dev')).toBe(false);
    expect(branchMatches(['*'], 'v1.2.3')).toBe(true);
    expect(branchMatches([], 'v1')).toBe(false);
  });
});
