import { GitForge } from '@stratum/contracts';

/**
 * The web page of a repository from its clone URL: `https://host/owner/repo` for https, ssh
 * (`ssh://git@host/owner/repo.git`) and scp-like (`git@host:owner/repo.git`) URLs; null for
 * `file://` and anything else that has no web page. Userinfo and ports of ssh URLs are dropped.
 */
export function repositoryWebUrl(repoUrl: string): string | null {
  const trimmed = repoUrl.trim();
  const scp = /^[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):(?!\/)(.+)$/.exec(trimmed);
  if (scp) {
    return `https://${scp[1].toLowerCase()}/${stripGit(scp[2])}`;
  }
  let u: URL;
  try {
    u = new URL(trimmed);
  } catch {
    return null;
  }
  const path = stripGit(decodeURIComponent(u.pathname));
  if (path === '') {
    return null;
  }
  switch (u.protocol) {
    case 'https:':
    case 'http:':
      return `${u.protocol}//${u.host.toLowerCase()}/${path}`;
    case 'ssh:':
    case 'git:':
      return `https://${u.hostname.toLowerCase()}/${path}`;
    default:
      return null;
  }
}

/**
 * A commit's page on its forge: GitHub and Gitea `<repo>/commit/<sha>`, GitLab
 * `<repo>/-/commit/<sha>`. Without a known forge a host named like GitLab gets GitLab's form.
 */
export function commitWebUrl(forge: GitForge | null, repoUrl: string, sha: string): string | null {
  const web = repositoryWebUrl(repoUrl);
  if (web === null) {
    return null;
  }
  const gitlab =
    forge === GitForge.GitLab || (forge === null && /(^|\.)gitlab\./i.test(new URL(web).hostname));
  return gitlab ? `${web}/-/commit/${sha}` : `${web}/commit/${sha}`;
}

function stripGit(path: string): string {
  return path
    .replace(/^\/+/, '')
    .replace(/\/+$/, '')
    .replace(/\.git$/, '');
}
