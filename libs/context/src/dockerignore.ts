// .dockerignore, with Docker's matcher as implemented by @balena/dockerignore (a port of
// moby's fileutils.PatternMatcher): `#` comments, `!` exceptions (last match wins), `**`,
// leading `/` and `./` cleaned, parent-directory matching.
// https://docs.docker.com/build/concepts/context/#dockerignore-files
import ignore from '@balena/dockerignore';

/** A parsed .dockerignore. */
export interface Dockerignore {
  /** The patterns kept, cleaned as Docker does (`!` kept on exceptions). */
  readonly patterns: readonly string[];
  /**
   * Whether `path` (relative to the context root, `/` separated) is left out of the context.
   * The Dockerfile and `.dockerignore` are always sent, as the docker CLI re-includes them.
   */
  isIgnored(path: string): boolean;
}

export interface DockerignoreOptions {
  /** Path of the Dockerfile inside the context (default `Dockerfile`); never ignored. */
  dockerfilePath?: string;
}

function cleanPattern(line: string): string | undefined {
  // moby ReadAll: skip comments, trim, strip `!`, filepath.Clean, drop a leading `/`.
  if (line.startsWith('#')) {
    return undefined;
  }
  let pattern = line.trim();
  if (pattern === '') {
    return undefined;
  }
  const invert = pattern.startsWith('!');
  if (invert) {
    pattern = pattern.slice(1).trim();
  }
  if (pattern.length > 0) {
    pattern = cleanPath(pattern);
    if (pattern.length > 1 && pattern.startsWith('/')) {
      pattern = pattern.slice(1);
    }
  }
  return invert ? '!' + pattern : pattern;
}

/** Go's path.Clean. */
function cleanPath(p: string): string {
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') {
      continue;
    }
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') {
        out.pop();
      } else if (!rooted) {
        out.push('..');
      }
      continue;
    }
    out.push(part);
  }
  const joined = (rooted ? '/' : '') + out.join('/');
  return joined === '' ? '.' : joined;
}

/** Parses .dockerignore text (a UTF-8 BOM and CRLF endings are accepted). */
export function parseDockerignore(text: string, options: DockerignoreOptions = {}): Dockerignore {
  const patterns = text
    .replace(/^\uFEFF/, '')
    .split(/\r?\n/)
    .flatMap((line) => {
      const p = cleanPattern(line);
      return p === undefined ? [] : [p];
    });
  // Docker on Linux matches case-sensitively; the package defaults to ignorecase.
  const matcher = ignore({ ignorecase: false }).add(patterns);
  const always = new Set(['.dockerignore', cleanPath(options.dockerfilePath ?? 'Dockerfile')]);
  return {
    patterns,
    isIgnored(path: string): boolean {
      const rel = cleanPath(path.replace(/^\/+/, ''));
      if (rel === '.' || always.has(rel)) {
        return false;
      }
      return matcher.ignores(rel);
    },
  };
}

/** Paths matched against `COPY/ADD --exclude` patterns. */
export interface PathMatcher {
  /** The patterns as cleaned (`!` kept on exceptions). */
  readonly patterns: readonly string[];
  /** Some pattern is an exception (`!x`): an excluded directory may still hold included paths. */
  readonly hasExceptions: boolean;
  /** Whether `path` (relative, `/` separated) or a directory above it is excluded. */
  matches(path: string): boolean;
}

/**
 * A matcher for `COPY/ADD --exclude=<pattern>`: BuildKit hands these to the same pattern
 * matcher as .dockerignore (moby/patternmatcher: `*`, `?`, `[...]`, `**`, `!` exceptions, a
 * matched directory takes everything below it), anchored at the copied source.
 * https://docs.docker.com/reference/dockerfile/#copy---exclude
 */
export function createPathMatcher(patterns: readonly string[]): PathMatcher {
  const cleaned = patterns.flatMap((line) => {
    const p = cleanPattern(line);
    return p === undefined ? [] : [p];
  });
  const matcher = ignore({ ignorecase: false }).add(cleaned);
  return {
    patterns: cleaned,
    hasExceptions: cleaned.some((p) => p.startsWith('!')),
    matches(path: string): boolean {
      const rel = cleanPath(path.replace(/^\/+/, ''));
      return rel !== '.' && cleaned.length > 0 && matcher.ignores(rel);
    },
  };
}

/**
 * `COPY --parents` source `a/./b/*.txt`: the part before the first `/./` pivot (as BuildKit cuts it) is where the
 * kept parents start (`a`), the rest is matched below it (`b/*.txt`); without a pivot every
 * parent is kept (root `.`). Both come back cleaned, without a leading `/`.
 * https://docs.docker.com/reference/dockerfile/#copy---parents
 */
export function splitParentsSource(source: string): { root: string; pattern: string } {
  const at = source.indexOf('/./');
  const strip = (p: string): string => {
    const c = cleanPath(`/${p}`).slice(1);
    return c === '' ? '.' : c;
  };
  if (at < 0) {
    return { root: '.', pattern: strip(source) };
  }
  return { root: strip(source.slice(0, at)), pattern: strip(source.slice(at + 3)) };
}
