// RUN --mount=... parsing, after BuildKit's instructions/commands_runmount.go.
// https://docs.docker.com/reference/dockerfile/#run---mount
import type { CacheSharing, Mount, MountType } from './instructions';

const MOUNT_TYPES: readonly MountType[] = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'];
const SHARING: readonly CacheSharing[] = ['shared', 'private', 'locked'];

/** Go's encoding/csv for a single record (quotes, `""` escapes, no lazy quotes). */
export function readCsvRecord(text: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) {
          throw new Error('extraneous or missing " in quoted-field');
        }
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += text[i];
        i++;
      }
      if (i < text.length && text[i] !== ',') {
        throw new Error('extraneous or missing " in quoted-field');
      }
    } else {
      while (i < text.length && text[i] !== ',') {
        if (text[i] === '"') {
          throw new Error('bare " in non-quoted-field');
        }
        field += text[i];
        i++;
      }
    }
    fields.push(field);
    if (i >= text.length) {
      return fields;
    }
    i++; // the comma
  }
}

function parseBool(key: string, value: string): boolean {
  // Go's strconv.ParseBool.
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) {
    return true;
  }
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) {
    return false;
  }
  throw new Error(`invalid value for ${key}: ${value}`);
}

function parseUint(key: string, value: string, radix: 8 | 10): number {
  const re = radix === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  const n = re.test(value) ? parseInt(value, radix) : NaN;
  if (!Number.isFinite(n) || n > 0xffffffff) {
    throw new Error(`invalid value for ${key}: ${value}`);
  }
  return n;
}

/** docker/go-units RAMInBytes: `64m`, `1g`, `512k`, plain bytes. */
function parseSize(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$/i.exec(value);
  if (!m) {
    throw new Error(`invalid size: '${value}'`);
  }
  const unit = (m[2] ?? '').toLowerCase();
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 }[unit] ?? 1;
  return Math.floor(Number(m[1]) * mult);
}

function basename(p: string): string {
  const trimmed = p.replace(/\/+$/, '');
  if (trimmed === '') {
    return p === '' ? '.' : '/';
  }
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}

/**
 * Parses one `--mount` value. `expand` (when given) is applied to every value, as BuildKit
 * does at dispatch; without it, values are kept as written and enum checks are skipped for
 * values holding a `$`. Throws a plain Error with a BuildKit-like message.
 */
export function parseMount(raw: string, expand?: (value: string) => string): Mount {
  let fields: string[];
  try {
    fields = readCsvRecord(raw);
  } catch (err) {
    throw new Error(`failed to parse csv mounts: ${(err as Error).message}`, { cause: err });
  }
  const m: Mount = { type: 'bind', readOnly: false, required: false, raw };
  let roAuto = true;
  let fileInfo = false;
  const deferred = (v: string): boolean => expand === undefined && v.includes('$');
  for (const field of fields) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    if (eq < 0) {
      switch (key) {
        case 'readonly':
        case 'ro':
          m.readOnly = true;
          roAuto = false;
          continue;
        case 'readwrite':
        case 'rw':
          m.readOnly = false;
          roAuto = false;
          continue;
        case 'required':
          if (m.type === 'secret' || m.type === 'ssh') {
            m.required = true;
            continue;
          }
          throw new Error(`unexpected key '${key}' for mount type '${m.type}'`);
        default:
          throw new Error(`invalid field '${field}' must be a key=value pair`);
      }
    }
    let value = field.slice(eq + 1);
    if (expand) {
      value = expand(value);
    }
    switch (key) {
      case 'type': {
        const t = value.toLowerCase();
        if (!MOUNT_TYPES.includes(t as MountType)) {
          if (deferred(value)) {
            m.type = value as MountType;
            break;
          }
          throw new Error(`unsupported mount type "${value}"`);
        }
        m.type = t as MountType;
        break;
      }
      case 'from':
        m.from = value;
        break;
      case 'source':
      case 'src':
        m.source = value;
        break;
      case 'target':
      case 'dst':
      case 'destination':
        m.target = value;
        break;
      case 'readonly':
      case 'ro':
        m.readOnly = deferred(value) ? true : parseBool(key, value);
        roAuto = false;
        break;
      case 'readwrite':
      case 'rw':
        m.readOnly = deferred(value) ? false : !parseBool(key, value);
        roAuto = false;
        break;
      case 'required':
        if (m.type !== 'secret' && m.type !== 'ssh') {
          throw new Error(`unexpected key '${key}' for mount type '${m.type}'`);
        }
        m.required = deferred(value) ? true : parseBool(key, value);
        break;
      case 'sharing': {
        const s = value.toLowerCase();
        if (value !== '' && !SHARING.includes(s as CacheSharing) && !deferred(value)) {
          throw new Error(`unsupported sharing value "${value}"`);
        }
        if (value !== '') {
          m.sharing = s as CacheSharing;
        }
        break;
      }
      case 'mode':
        if (!deferred(value)) {
          m.mode = parseUint(key, value, 8);
        }
        fileInfo = true;
        break;
      case 'uid':
        if (!deferred(value)) {
          m.uid = parseUint(key, value, 10);
        }
        fileInfo = true;
        break;
      case 'gid':
        if (!deferred(value)) {
          m.gid = parseUint(key, value, 10);
        }
        fileInfo = true;
        break;
      case 'id':
        m.id = value;
        break;
      case 'size':
        if (m.type !== 'tmpfs') {
          throw new Error(`unexpected key '${key}' for mount type '${m.type}'`);
        }
        if (!deferred(value)) {
          m.size = parseSize(value);
        }
        break;
      case 'env':
        if (m.type !== 'secret') {
          throw new Error(`unexpected key '${key}' for mount type '${m.type}'`);
        }
        m.env = value;
        break;
      default:
        throw new Error(`unexpected key '${key}' in '${field}'`);
    }
  }
  if (fileInfo && m.type !== 'secret' && m.type !== 'ssh' && m.type !== 'cache') {
    throw new Error(`mode/uid/gid not allowed for "${m.type}" type mounts`);
  }
  if (roAuto) {
    m.readOnly = !(m.type === 'cache' || m.type === 'tmpfs');
  }
  if (m.sharing !== undefined && m.type !== 'cache') {
    throw new Error(`invalid cache sharing set for ${m.type} mount`);
  }
  switch (m.type) {
    case 'secret': {
      if (m.from !== undefined) {
        throw new Error('secret mount should not have a from');
      }
      if (m.source !== undefined && m.id !== undefined) {
        throw new Error("both source and id can't be set");
      }
      const id = m.id ?? m.source ?? (m.target !== undefined ? basename(m.target) : undefined);
      if (id === undefined || id === '') {
        throw new Error('invalid secret mount. one of source, target required');
      }
      m.id = id;
      // `env=` alone exposes the secret as a variable only (BuildKit: "instead of a file, or both").
      if (m.env === undefined) {
        m.target ??= `/run/secrets/${basename(id)}`;
      }
      break;
    }
    case 'ssh':
      if (m.from !== undefined) {
        throw new Error('ssh mount should not have a from');
      }
      m.id ??= 'default';
      break;
    case 'cache':
      m.sharing ??= 'shared';
      if (m.target === undefined || m.target === '') {
        throw new Error('mount type "cache" requires a target');
      }
      break;
    case 'bind':
    case 'tmpfs':
      if (m.target === undefined || m.target === '') {
        throw new Error(`mount type "${m.type}" requires a target`);
      }
      break;
  }
  return m;
}
