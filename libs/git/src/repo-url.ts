/**
 * A repository URL reduced to what names the repository, so the project's URL and the many
 * URLs a webhook carries compare equal: lower-case host, no scheme, userinfo, port, `.git`
 * suffix or trailing slash; scp-like `git@host:owner/repo` becomes `host/owner/repo`.
 * `file://` URLs keep their full path.
 */
export function repositoryKey(url: string): string {
  const trimmed = url.trim();
  const scp = /^[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):(?!\/)(.+)$/.exec(trimmed);
  if (scp) {
    return `${scp[1].toLowerCase()}/${stripPath(scp[2])}`;
  }
  try {
    const u = new URL(trimmed);
    if (u.protocol === 'file:') {
      return `file:${stripPath(decodeURIComponent(u.pathname))}`;
    }
    return `${u.hostname.toLowerCase()}/${stripPath(decodeURIComponent(u.pathname))}`;
  } catch {
    return stripPath(trimmed);
  }
}

function stripPath(path: string): string {
  return path
    .replace(/^\/+/, '')
    .replace(/\/+$/, '')
    .replace(/\.git$/, '')
    .replace(/\/+$/, '');
}
