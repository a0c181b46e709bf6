import { ConfineError, readFileBeneath } from '@stratum/confine';
import { RuntimeError } from './runtime-error';

/** The numeric identity a container process runs as, plus what the passwd entry says. */
export interface ResolvedUser {
  uid: number;
  gid: number;
  /** Supplementary groups (the user's memberships in /etc/group when no group was given). */
  additionalGids: number[];
  /** Home directory from /etc/passwd, `/` when there is no entry (Docker's default). */
  home: string;
  /** The passwd name, when an entry matched. */
  name?: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

const MAX_ID = 0xfffffffe; // (uid_t)-1 means "no change" to the kernel
const MAX_DB_BYTES = 4 * 1024 * 1024;

function parseId(text: string): number | null {
  if (!/^\d{1,10}$/.test(text)) {
    return null;
  }
  const id = Number(text);
  return id <= MAX_ID ? id : null;
}

function records(text: string | null): string[][] {
  if (text === null) {
    return [];
  }
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => line.split(':'));
}

/** Parses passwd(5) text; malformed lines are skipped, as libc does. */
export function parsePasswd(text: string | null): PasswdEntry[] {
  const entries: PasswdEntry[] = [];
  for (const f of records(text)) {
    const uid = parseId(f[2] ?? '');
    const gid = parseId(f[3] ?? '');
    if (f[0] && uid !== null && gid !== null) {
      entries.push({ name: f[0], uid, gid, home: f[5] || '/' });
    }
  }
  return entries;
}

/** Parses group(5) text; malformed lines are skipped. */
export function parseGroup(text: string | null): GroupEntry[] {
  const entries: GroupEntry[] = [];
  for (const f of records(text)) {
    const gid = parseId(f[2] ?? '');
    if (f[0] && gid !== null) {
      const members = (f[3] ?? '').split(',').filter((m) => m !== '');
      entries.push({ name: f[0], gid, members });
    }
  }
  return entries;
}

async function readDb(rootfs: string, file: string): Promise<string | null> {
  try {
    // Inside the rootfs only: an image's `/etc/passwd -> /etc/passwd` of the host reads the
    // image's own (or nothing), never the host's.
    return await readFileBeneath(rootfs, file, MAX_DB_BYTES, { what: file });
  } catch (err) {
    if (err instanceof ConfineError && err.code === 'PATH_INVALID') {
      return null; // a symlink loop: as good as no file (getent would find nothing either)
    }
    throw new RuntimeError('OPTIONS_INVALID', `cannot read ${file} in the root filesystem: ${String(err)}`);
  }
}

/**
 * Turns a Dockerfile `USER` value (`name`, `uid`, `name:group`, `uid:gid`, or empty for
 * root) into numeric ids using the rootfs's /etc/passwd and /etc/group, the way Docker does
 * (github.com/moby/sys/user GetExecUser): a numeric uid needs no passwd entry (gid then 0),
 * an explicit group disables supplementary groups. The files are read with symlinks resolved
 * inside `rootfs` only, never out to the host.
 * @throws RuntimeError USER_UNKNOWN / GROUP_UNKNOWN for names with no entry.
 */
export async function resolveUser(rootfs: string, spec: string | undefined): Promise<ResolvedUser> {
  const value = (spec ?? '').trim() || '0';
  const colon = value.indexOf(':');
  const userPart = colon === -1 ? value : value.slice(0, colon);
  const groupPart = colon === -1 ? undefined : value.slice(colon + 1);
  if (userPart === '' || groupPart === '') {
    throw new RuntimeError('OPTIONS_INVALID', `invalid user "${value}"`);
  }

  const numericUid = parseId(userPart);
  const numericGid = groupPart === undefined ? null : parseId(groupPart);
  // uid:gid needs no files at all; don't even open them
  const needPasswd = !(numericUid !== null && numericGid !== null);
  const passwd = needPasswd ? parsePasswd(await readDb(rootfs, '/etc/passwd')) : [];
  const entry =
    numericUid !== null ? passwd.find((e) => e.uid === numericUid) : passwd.find((e) => e.name === userPart);
  if (numericUid === null && entry === undefined) {
    throw new RuntimeError(
      'USER_UNKNOWN',
      `unable to find user ${userPart}: no matching entries in passwd file`,
      {
        user: userPart,
      },
    );
  }
  const user: ResolvedUser = {
    uid: numericUid ?? (entry as PasswdEntry).uid,
    gid: entry?.gid ?? 0,
    additionalGids: [],
    home: entry?.home ?? '/',
  };
  if (entry) {
    user.name = entry.name;
  }

  if (groupPart !== undefined) {
    if (numericGid !== null) {
      user.gid = numericGid;
    } else {
      const group = parseGroup(await readDb(rootfs, '/etc/group')).find((g) => g.name === groupPart);
      if (!group) {
        throw new RuntimeError(
          'GROUP_UNKNOWN',
          `unable to find group ${groupPart}: no matching entries in group file`,
          {
            group: groupPart,
          },
        );
      }
      user.gid = group.gid;
    }
    return user;
  }
  if (entry) {
    const groups = parseGroup(await readDb(rootfs, '/etc/group'));
    const gids = groups.filter((g) => g.members.includes(entry.name)).map((g) => g.gid);
    user.additionalGids = [...new Set(gids)];
  }
  return user;
}
