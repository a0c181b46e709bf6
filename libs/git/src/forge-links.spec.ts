import { GitForge } from '@stratum/contracts';
import { commitWebUrl, repositoryWebUrl } from './forge-links';

describe('repositoryWebUrl', () => {
  it.each([
    ['https://github.com/acme/app.git', 'https://github.com/acme/app'],
    ['https://user:tok@GitLab.example.com:8443/g/sub/app/', 'https://gitlab.example.com:8443/g/sub/app'],
    ['git@github.com:acme/app.git', 'https://github.com/acme/app'],
    ['ssh://git@gitea.example.com:2222/acme/app.git', 'https://gitea.example.com/acme/app'],
  ])('%s → %s', (url, web) => {
    expect(repositoryWebUrl(url)).toBe(web);
  });

  it('has none for file:// and nonsense', () => {
    expect(repositoryWebUrl('file:///srv/git/app.git')).toBeNull();
    expect(repositoryWebUrl('not a url')).toBeNull();
    expect(repositoryWebUrl('https://example.com/')).toBeNull();
  });
});

describe('commitWebUrl', () => {
  const sha = 'a'.repeat(40);
  it('uses each forge’s commit page', () => {
    expect(commitWebUrl(GitForge.GitHub, 'git@github.com:acme/app.git', sha)).toBe(
      `https://github.com/acme/app/commit/${sha}`,
    );
    expect(commitWebUrl(GitForge.GitLab, 'https://git.example.com/g/app.git', sha)).toBe(
      `https://git.example.com/g/app/-/commit/${sha}`,
    );
    expect(commitWebUrl(GitForge.Gitea, 'https://git.example.com/o/app.git', sha)).toBe(
      `https://git.example.com/o/app/commit/${sha}`,
    );
  });

  it('guesses GitLab from the host when the project names no forge', () => {
    expect(commitWebUrl(null, 'https://gitlab.com/g/app.git', sha)).toBe(
      `https://gitlab.com/g/app/-/commit/${sha}`,
    );
    expect(commitWebUrl(null, 'file:///x.git', sha)).toBeNull();
  });
});
