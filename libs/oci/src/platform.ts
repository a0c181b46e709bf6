import type { Platform } from './schemas';

// Platform strings as buildx and containerd's `platforms` package read them:
// `os/arch[/variant]`, or `arch[/variant]` alone meaning linux. Architecture aliases
// (`x86_64`, `aarch64`, `armhf`) are normalised the same way, and `arm64/v8` is plain `arm64`.
// https://github.com/containerd/platforms/blob/main/platforms.go

/** Architectures Stratum can build for (Linux only: RUN steps run in Linux containers). */
const ARCHITECTURES = new Set([
  'amd64',
  'arm64',
  'arm',
  '386',
  'ppc64le',
  's390x',
  'riscv64',
  'mips64le',
  'loong64',
]);

const ARCH_ALIASES: Readonly<Record<string, string>> = {
  x86_64: 'amd64',
  'x86-64': 'amd64',
  aarch64: 'arm64',
  armhf: 'arm',
  armel: 'arm',
  i386: '386',
  i686: '386',
};

/** At most this many platforms on one build. */
export const MAX_PLATFORMS = 8;

export class PlatformError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlatformError';
  }
}

/**
 * Parses and normalises one platform string (`linux/arm64`, `arm64`, `linux/arm/v7`,
 * `linux/aarch64`). Throws {@link PlatformError} naming the string when it is not one Stratum
 * can build for.
 */
export function parsePlatform(text: string): Platform {
  const raw = text.trim().toLowerCase();
  const parts = raw.split('/');
  if (raw === '' || parts.length > 3 || parts.some((p) => p === '')) {
    throw new PlatformError(`platform "${text}" is not os/arch[/variant] (e.g. linux/arm64)`);
  }
  let os = 'linux';
  if (parts.length >= 2 && !ARCHITECTURES.has(parts[0]) && !(parts[0] in ARCH_ALIASES)) {
    os = parts.shift() as string;
  }
  if (os !== 'linux') {
    throw new PlatformError(`platform "${text}": only linux can be built for (os "${os}")`);
  }
  if (parts.length > 2) {
    throw new PlatformError(`platform "${text}" is not os/arch[/variant] (e.g. linux/arm64)`);
  }
  const alias = ARCH_ALIASES[parts[0]] as string | undefined;
  const architecture = alias ?? parts[0];
  let variant: string | undefined = parts[1];
  if (!ARCHITECTURES.has(architecture)) {
    throw new PlatformError(
      `platform "${text}": unknown architecture "${parts[0]}" (known: ${[...ARCHITECTURES].join(', ')})`,
    );
  }
  if (architecture === 'arm64') {
    if (variant !== undefined && variant !== 'v8') {
      throw new PlatformError(`platform "${text}": arm64 has no variant "${variant}"`);
    }
    variant = undefined; // arm64/v8 is arm64
  } else if (architecture === 'arm') {
    if (variant === undefined) {
      variant = parts[0] === 'armel' ? 'v6' : 'v7';
    }
    if (!['v5', 'v6', 'v7', 'v8'].includes(variant)) {
      throw new PlatformError(`platform "${text}": arm has no variant "${variant}" (v5, v6, v7, v8)`);
    }
  } else if (architecture === 'amd64' && variant !== undefined) {
    if (!['v1', 'v2', 'v3', 'v4'].includes(variant)) {
      throw new PlatformError(`platform "${text}": amd64 has no variant "${variant}"`);
    }
    if (variant === 'v1') {
      variant = undefined;
    }
  } else if (variant !== undefined) {
    throw new PlatformError(`platform "${text}": ${architecture} has no variant "${variant}"`);
  }
  return variant !== undefined ? { os, architecture, variant } : { os, architecture };
}

/** `os/arch[/variant]`. */
export function formatPlatform(p: Pick<Platform, 'os' | 'architecture' | 'variant'>): string {
  return `${p.os}/${p.architecture}${p.variant !== undefined && p.variant !== '' ? `/${p.variant}` : ''}`;
}

/**
 * A comma-separated list (`linux/amd64,linux/arm64`, as `--platform` takes it), each
 * normalised, duplicates dropped, order kept. Throws naming the first bad entry, or when
 * there are more than {@link MAX_PLATFORMS}.
 */
export function parsePlatformList(text: string): string[] {
  const out: string[] = [];
  for (const part of text.split(',')) {
    if (part.trim() === '') {
      continue;
    }
    const p = formatPlatform(parsePlatform(part));
    if (!out.includes(p)) {
      out.push(p);
    }
  }
  if (out.length === 0) {
    throw new PlatformError(`platform list "${text}" names no platform`);
  }
  if (out.length > MAX_PLATFORMS) {
    throw new PlatformError(`${out.length} platforms asked for; at most ${MAX_PLATFORMS} per build`);
  }
  return out;
}

/**
 * Whether an image built for `have` serves a request for `want`: os and architecture equal,
 * and the variant when `want` names one (an arm/v7 request takes an arm/v7 image only).
 */
export function platformMatches(have: Partial<Platform> | undefined, want: Platform): boolean {
  if (have?.os !== want.os || have.architecture === undefined) {
    return false;
  }
  const arch = ARCH_ALIASES[have.architecture] ?? have.architecture;
  if (arch !== want.architecture) {
    return false;
  }
  const variant = arch === 'arm64' && have.variant === 'v8' ? undefined : have.variant;
  return want.variant === undefined || variant === want.variant;
}

/** The platform this process runs on natively (Node's `process.arch` in OCI words). */
export function nodeArchPlatform(arch: string): Platform | null {
  const map: Record<string, Platform> = {
    x64: { os: 'linux', architecture: 'amd64' },
    arm64: { os: 'linux', architecture: 'arm64' },
    arm: { os: 'linux', architecture: 'arm', variant: 'v7' },
    ia32: { os: 'linux', architecture: '386' },
    ppc64: { os: 'linux', architecture: 'ppc64le' },
    s390x: { os: 'linux', architecture: 's390x' },
    riscv64: { os: 'linux', architecture: 'riscv64' },
    loong64: { os: 'linux', architecture: 'loong64' },
  };
  return map[arch] ?? null;
}

/** A platform as a queue-name and file-name safe word: `linux-arm-v7`. */
export function platformSlug(platform: string): string {
  return platform.replace(/\//g, '-');
}
