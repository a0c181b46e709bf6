import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { ConfineError } from './confine-error';

/** Longest readable name {@link checkName} accepts by default (ids we mint are far shorter). */
export const MAX_NAME_LENGTH = 128;

/**
 * One path component that stays readable: a letter, digit or `_` first (so never `.`, `..`
 * or a hidden name), then letters, digits, `_`, `.` and `-`. That excludes `/`, `\`, NUL
 * and every other control or shell-special character by construction.
 */
const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** True when `name` passes {@link checkName}. */
export function isSafeName(name: unknown, maxLength = MAX_NAME_LENGTH): name is string {
  return typeof name === 'string' && name.length > 0 && name.length <= maxLength && SAFE_NAME.test(name);
}

/**
 * Checks a name that must stay readable as one path component (build ids, upload ids,
 * container ids, worker ids: names we mint or that an operator chose) and returns it.
 *
 * @param what names the input in the error ("build id", "upload id").
 * @throws ConfineError `PATH_INVALID` for an empty, over-long, `.`/`..`, `/`- or NUL-holding
 *   name, or any character outside `[A-Za-z0-9_.-]`.
 */
export function checkName(name: string, what = 'name', maxLength = MAX_NAME_LENGTH): string {
  if (!isSafeName(name, maxLength)) {
    throw new ConfineError(
      'PATH_INVALID',
      `invalid ${what} ${JSON.stringify(String(name).slice(0, 80))}: expected 1-${maxLength} of [A-Za-z0-9_.-], not starting with "." or "-"`,
    );
  }
  return name;
}

/** `root/<name>` for a name that passes {@link checkName}. */
export function nameBeneath(root: string, name: string, what = 'name'): string {
  return join(root, checkName(name, what));
}

/**
 * Checks a user-chosen file name that must stay as written (a heredoc's name is the name of
 * the file COPY creates): only what the filesystem itself forbids or reads as a path is
 * refused — empty, `.`, `..`, `/`, NUL, over 255 bytes (NAME_MAX).
 *
 * @throws ConfineError `PATH_INVALID`.
 */
export function checkFileName(name: string, what = 'file name'): string {
  if (
    name === '' ||
    name === '.' ||
    name === '..' ||
    name.includes('/') ||
    name.includes('\0') ||
    Buffer.byteLength(name, 'utf8') > 255
  ) {
    throw new ConfineError(
      'PATH_INVALID',
      `invalid ${what} ${JSON.stringify(name.slice(0, 80))}: not one file name (empty, ".", "..", "/", NUL or over 255 bytes)`,
    );
  }
  return name;
}

/**
 * A fixed, safe directory name for a user-given key (cache mount id, secret id, …): the
 * sha256 of the key in hex. The key is opaque — `..`, `/`, NUL or 10 KB of text all map to
 * 64 hex digits — as BuildKit treats cache ids as keys, not paths.
 */
export function opaqueName(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** `root/<opaqueName(key)>`: where the data a user key names lives, always one level below `root`. */
export function opaquePath(root: string, key: string): string {
  return join(root, opaqueName(key));
}
