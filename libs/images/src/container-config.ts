import { posix } from 'node:path';
import { ContainerRunConfig, StratumError } from '@stratum/contracts';
import {
  DOCKERFILE_LIMITS,
  DockerfileError,
  expandInstruction,
  ExpansionScope,
  Instruction,
  parseDockerfile,
} from '@stratum/dockerfile';
import { ContainerConfig, Digest, HistoryEntry, ImageConfig } from '@stratum/oci';

// Pure rules of `docker run` and `docker commit` over image configs, shared by the API (which
// validates and records) and the worker (which runs and commits).

/** What a run request may override (`docker run -e -w -u IMAGE CMD...`). */
export interface RunOverrides {
  readonly cmd: readonly string[];
  readonly env: readonly string[];
  readonly workdir?: string;
  readonly user?: string;
}

function envKey(entry: string): string {
  const eq = entry.indexOf('=');
  return eq === -1 ? entry : entry.slice(0, eq);
}

/** Docker's env merge: later entries replace earlier ones with the same key, order kept. */
export function mergeEnv(base: readonly string[], overrides: readonly string[]): string[] {
  const out = [...base];
  for (const entry of overrides) {
    const key = envKey(entry);
    const at = out.findIndex((e) => envKey(e) === key);
    if (at === -1) {
      out.push(entry);
    } else {
      out[at] = entry;
    }
  }
  return out;
}

/**
 * The container's config as Docker builds it for `docker run`: the image's Entrypoint is kept,
 * a given command replaces the image's Cmd, env entries replace the image's by key, `-w`/`-u`
 * replace WorkingDir/User. BAD_REQUEST when there is nothing to run.
 */
export function runConfig(image: ImageConfig, overrides: RunOverrides): ContainerRunConfig {
  const c = image.config ?? {};
  const Entrypoint = c.Entrypoint ?? [];
  const Cmd = overrides.cmd.length > 0 ? [...overrides.cmd] : (c.Cmd ?? []);
  if (Entrypoint.length + Cmd.length === 0) {
    throw new StratumError(
      'BAD_REQUEST',
      'no command specified: the image has no Entrypoint or Cmd, give cmd',
    );
  }
  return {
    Entrypoint,
    Cmd,
    Env: mergeEnv(c.Env ?? [], overrides.env),
    WorkingDir: overrides.workdir ?? c.WorkingDir ?? '',
    User: overrides.user ?? c.User ?? '',
  };
}

/** The argv a container runs. */
export function commandOf(config: ContainerRunConfig): string[] {
  return [...config.Entrypoint, ...config.Cmd];
}

/** Instructions `docker commit --change` accepts (moby builder/dockerfile: validCommitCommands). */
const COMMIT_KINDS = new Set<Instruction['kind']>([
  'CMD',
  'ENTRYPOINT',
  'ENV',
  'EXPOSE',
  'HEALTHCHECK',
  'LABEL',
  'ONBUILD',
  'STOPSIGNAL',
  'USER',
  'VOLUME',
  'WORKDIR',
]);

/**
 * Parses `--change` lines (each a Dockerfile instruction). BAD_REQUEST naming the bad change
 * when one does not parse or is not allowed in a commit, or when there are more than a
 * Dockerfile may hold (DOCKERFILE_LIMITS.maxInstructions).
 */
export function parseCommitChanges(changes: readonly string[]): Instruction[] {
  if (changes.length > DOCKERFILE_LIMITS.maxInstructions) {
    throw new StratumError(
      'BAD_REQUEST',
      `${changes.length} changes exceed the limit maxInstructions (${DOCKERFILE_LIMITS.maxInstructions})`,
    );
  }
  return changes.map((change, i) => {
    if (change.includes('\n')) {
      throw new StratumError('BAD_REQUEST', `changes[${i}]: one instruction per change, no newlines`);
    }
    let parsed;
    try {
      parsed = parseDockerfile(`FROM scratch\n${change}\n`);
    } catch (err) {
      const why = err instanceof DockerfileError ? err.message : String(err);
      throw new StratumError('BAD_REQUEST', `changes[${i}]: ${why}`);
    }
    // parsed.instructions[0] is our FROM; a change that is itself a FROM is refused below.
    const instr = parsed.instructions[1];
    if (instr === undefined || parsed.instructions.length !== 2) {
      throw new StratumError('BAD_REQUEST', `changes[${i}]: expected one instruction`);
    }
    if (!COMMIT_KINDS.has(instr.kind)) {
      throw new StratumError(
        'BAD_REQUEST',
        `changes[${i}]: ${instr.kind} is not allowed in a commit (use ${[...COMMIT_KINDS].join(', ')})`,
      );
    }
    return instr;
  });
}

function envRecord(env: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of env) {
    const eq = e.indexOf('=');
    if (eq > 0) {
      out[e.slice(0, eq)] = e.slice(eq + 1);
    }
  }
  return out;
}

function portKey(port: string): string[] {
  const [range, proto = 'tcp'] = port.split('/');
  const m = /^(\d+)(?:-(\d+))?$/.exec(range);
  if (m === null) {
    throw new StratumError('BAD_REQUEST', `EXPOSE: invalid port "${port}"`);
  }
  const first = Number(m[1]);
  const last = m[2] === undefined ? first : Number(m[2]);
  if (first < 1 || last > 65535 || last < first) {
    throw new StratumError('BAD_REQUEST', `EXPOSE: invalid port range "${port}"`);
  }
  const out: string[] = [];
  for (let p = first; p <= last; p++) {
    out.push(`${p}/${proto.toLowerCase()}`);
  }
  return out;
}

/**
 * Applies commit changes to a container config, as Docker's BuildFromConfig dispatches them:
 * words are expanded against the config's Env (ENV changes apply to later ones), shell-form
 * CMD/ENTRYPOINT run through the config's Shell (default `/bin/sh -c`), ENTRYPOINT clears an
 * inherited Cmd unless a CMD change came before it, a relative WORKDIR resolves against the
 * current one. https://docs.docker.com/reference/cli/docker/container/commit/#change
 */
export function applyCommitChanges(
  config: ContainerConfig,
  changes: readonly Instruction[],
): ContainerConfig {
  const out: ContainerConfig = { ...config };
  const scope = new ExpansionScope({
    escapeToken: '\\',
    buildArgs: {},
    globalArgs: {},
    automaticArgs: {},
    baseEnv: envRecord(out.Env ?? []),
  });
  let cmdSet = false;
  const shell = (): string[] => (out.Shell && out.Shell.length > 0 ? out.Shell : ['/bin/sh', '-c']);
  for (const [i, raw] of changes.entries()) {
    let instr: Instruction;
    try {
      instr = expandInstruction(raw, scope);
      scope.apply(instr);
    } catch (err) {
      // The parser saw each change as line 2 of `FROM scratch\n<change>`: name the change.
      if (err instanceof DockerfileError) {
        throw new StratumError('BAD_REQUEST', `changes[${i}]: ${err.detail}`);
      }
      throw err;
    }
    switch (instr.kind) {
      case 'CMD':
        out.Cmd = instr.command.form === 'exec' ? instr.command.args : [...shell(), instr.command.command];
        cmdSet = true;
        break;
      case 'ENTRYPOINT':
        out.Entrypoint =
          instr.command.form === 'exec' ? instr.command.args : [...shell(), instr.command.command];
        if (!cmdSet) {
          out.Cmd = null;
        }
        break;
      case 'ENV':
        out.Env = mergeEnv(
          out.Env ?? [],
          instr.pairs.map((p) => `${p.key}=${p.value}`),
        );
        break;
      case 'EXPOSE': {
        const ports: Record<string, Record<string, never>> = { ...(out.ExposedPorts ?? {}) };
        for (const p of instr.ports) {
          for (const key of portKey(p)) {
            ports[key] = {};
          }
        }
        out.ExposedPorts = ports;
        break;
      }
      case 'LABEL':
        out.Labels = {
          ...(out.Labels ?? {}),
          ...Object.fromEntries(instr.labels.map((l) => [l.key, l.value])),
        };
        break;
      case 'VOLUME': {
        const volumes: Record<string, Record<string, never>> = { ...(out.Volumes ?? {}) };
        for (const v of instr.paths) {
          if (v.trim() === '') {
            throw new StratumError('BAD_REQUEST', 'VOLUME specified can not be an empty string');
          }
          volumes[v] = {};
        }
        out.Volumes = volumes;
        break;
      }
      case 'WORKDIR':
        out.WorkingDir = posix.resolve(out.WorkingDir || '/', instr.path);
        break;
      case 'USER':
        out.User = instr.user;
        break;
      case 'STOPSIGNAL':
        out.StopSignal = instr.signal;
        break;
      case 'ONBUILD':
        out.OnBuild = [...(out.OnBuild ?? []), instr.expression];
        break;
      case 'HEALTHCHECK':
        out.Healthcheck = {
          Test: instr.test,
          ...(instr.options.intervalNs > 0 ? { Interval: instr.options.intervalNs } : {}),
          ...(instr.options.timeoutNs > 0 ? { Timeout: instr.options.timeoutNs } : {}),
          ...(instr.options.startPeriodNs > 0 ? { StartPeriod: instr.options.startPeriodNs } : {}),
          ...(instr.options.startIntervalNs > 0 ? { StartInterval: instr.options.startIntervalNs } : {}),
          ...(instr.options.retries > 0 ? { Retries: instr.options.retries } : {}),
        };
        break;
      case 'ADD':
      case 'ARG':
      case 'COPY':
      case 'FROM':
      case 'MAINTAINER':
      case 'RUN':
      case 'SHELL':
        throw new StratumError('BAD_REQUEST', `${instr.kind} is not allowed in a commit`);
    }
  }
  return out;
}

/** Digest of an empty tar (two zero blocks): a snapshot of an unchanged container. */
export const EMPTY_TAR_DIFF_ID = 'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef';

export interface CommitInput {
  readonly parent: ImageConfig;
  readonly container: ContainerRunConfig;
  readonly command: readonly string[];
  readonly changes: readonly Instruction[];
  readonly message: string;
  readonly author: string;
  /** False when the container changed nothing (Docker then adds no layer, only history). */
  readonly layerAdded: boolean;
  readonly diffId: Digest | null;
  readonly created: string;
}

/**
 * The committed image's config, as `docker commit`: the container's config (image config with
 * the run's Cmd/Env/WorkingDir/User) with the changes applied, the author, a history entry
 * naming the container's command with the message as its comment, the new layer's diffID.
 */
export function commitConfig(input: CommitInput): ImageConfig {
  const { parent } = input;
  const base: ContainerConfig = {
    ...(parent.config ?? {}),
    Entrypoint: input.container.Entrypoint.length > 0 ? input.container.Entrypoint : null,
    Cmd: input.container.Cmd.length > 0 ? input.container.Cmd : null,
    Env: input.container.Env,
    WorkingDir: input.container.WorkingDir,
    User: input.container.User,
  };
  for (const k of ['Entrypoint', 'Cmd', 'WorkingDir', 'User'] as const) {
    if (base[k] === null || base[k] === '') {
      delete base[k];
    }
  }
  let config: ContainerConfig;
  try {
    config = applyCommitChanges(base, input.changes);
  } catch (err) {
    if (err instanceof DockerfileError) {
      throw new StratumError('BAD_REQUEST', `changes: ${err.message}`);
    }
    throw err;
  }
  for (const k of ['Entrypoint', 'Cmd'] as const) {
    if (config[k] === null) {
      delete config[k];
    }
  }
  const history: HistoryEntry = {
    created: input.created,
    created_by: input.command.join(' '),
    ...(input.author !== '' ? { author: input.author } : {}),
    ...(input.message !== '' ? { comment: input.message } : {}),
    ...(input.layerAdded ? {} : { empty_layer: true }),
  };
  const next: ImageConfig = {
    ...parent,
    created: input.created,
    config,
    rootfs: {
      type: 'layers',
      diff_ids: [
        ...parent.rootfs.diff_ids,
        ...(input.layerAdded && input.diffId !== null ? [input.diffId] : []),
      ],
    },
    history: [...(parent.history ?? []), history],
  };
  if (input.author !== '') {
    next.author = input.author;
  } else {
    delete next.author;
  }
  return next;
}
