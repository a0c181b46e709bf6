import { CommandLine, Instruction } from '@stratum/dockerfile';
import { ContainerConfig } from '@stratum/oci';
import { ImageState, setEnv } from './image-state';

const DEFAULT_SHELL = ['/bin/sh', '-c'];

/** The shell a stage's shell-form commands run with (SHELL instruction, else /bin/sh -c). */
export function stageShell(state: ImageState): string[] {
  const shell = state.config.config?.Shell;
  return shell && shell.length > 0 ? [...shell] : [...DEFAULT_SHELL];
}

/** Shell form -> [...shell, cmd]; exec form as is. */
export function commandArgs(command: CommandLine, shell: readonly string[]): string[] {
  return command.form === 'exec' ? [...command.args] : [...shell, command.command];
}

/** Instructions that change only the config: no filesystem, no layer. */
export type MetadataInstruction = Extract<
  Instruction,
  {
    kind:
      | 'ENV'
      | 'ARG'
      | 'LABEL'
      | 'WORKDIR'
      | 'USER'
      | 'EXPOSE'
      | 'VOLUME'
      | 'CMD'
      | 'ENTRYPOINT'
      | 'SHELL'
      | 'HEALTHCHECK'
      | 'STOPSIGNAL'
      | 'ONBUILD'
      | 'MAINTAINER';
  }
>;

export function isMetadataInstruction(i: Instruction): i is MetadataInstruction {
  return !['FROM', 'RUN', 'COPY', 'ADD'].includes(i.kind);
}

/**
 * Applies a metadata instruction (already expanded) to the image config as Docker documents
 * (https://docs.docker.com/reference/dockerfile/). Returns the history `created_by` text.
 */
export function applyMetadata(state: ImageState, instr: MetadataInstruction): string {
  // In place: the stage owns its config (a copy of the config and its Labels per step made
  // 10,000 LABELs quadratic).
  const c: ContainerConfig = (state.config.config ??= {});
  let createdBy: string;
  switch (instr.kind) {
    case 'ENV':
      c.Env = setEnv(c.Env ?? [], instr.pairs);
      createdBy = `ENV ${instr.pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`;
      break;
    case 'ARG':
      createdBy = `ARG ${instr.args.map((a) => (a.defaultValue === undefined ? a.name : `${a.name}=${a.defaultValue}`)).join(' ')}`;
      break;
    case 'LABEL':
      c.Labels ??= {};
      for (const { key, value } of instr.labels) {
        c.Labels[key] = value;
      }
      createdBy = `LABEL ${instr.labels.map((l) => `${l.key}=${l.value}`).join(' ')}`;
      break;
    case 'MAINTAINER':
      state.config.author = instr.maintainer;
      createdBy = `MAINTAINER ${instr.maintainer}`;
      break;
    case 'WORKDIR': {
      const base = c.WorkingDir && c.WorkingDir !== '' ? c.WorkingDir : '/';
      const next = instr.path.startsWith('/') ? instr.path : `${base.replace(/\/$/, '')}/${instr.path}`;
      c.WorkingDir = normalizeAbs(next);
      createdBy = `WORKDIR ${c.WorkingDir}`;
      break;
    }
    case 'USER':
      c.User = instr.user;
      createdBy = `USER ${instr.user}`;
      break;
    case 'EXPOSE':
      c.ExposedPorts = { ...(c.ExposedPorts ?? {}) };
      for (const p of instr.ports) {
        c.ExposedPorts[p.includes('/') ? p.toLowerCase() : `${p}/tcp`] = {};
      }
      createdBy = `EXPOSE map[${Object.keys(c.ExposedPorts)
        .map((p) => `${p}:{}`)
        .join(' ')}]`;
      break;
    case 'VOLUME':
      c.Volumes = { ...(c.Volumes ?? {}) };
      for (const v of instr.paths) {
        c.Volumes[v] = {};
      }
      createdBy = `VOLUME [${instr.paths.join(' ')}]`;
      break;
    case 'CMD':
      c.Cmd = commandArgs(instr.command, stageShell(state));
      state.cmdSetInStage = true;
      createdBy = `CMD ${JSON.stringify(c.Cmd)}`;
      break;
    case 'ENTRYPOINT':
      c.Entrypoint = commandArgs(instr.command, stageShell(state));
      // Docker: ENTRYPOINT resets a CMD inherited from the base image, not one set in this stage.
      if (state.cmdSetInStage !== true) {
        delete c.Cmd;
      }
      createdBy = `ENTRYPOINT ${JSON.stringify(c.Entrypoint)}`;
      break;
    case 'SHELL':
      c.Shell = [...instr.shell];
      createdBy = `SHELL ${JSON.stringify(instr.shell)}`;
      break;
    case 'HEALTHCHECK':
      c.Healthcheck = {
        Test: instr.test,
        ...(instr.options.intervalNs ? { Interval: instr.options.intervalNs } : {}),
        ...(instr.options.timeoutNs ? { Timeout: instr.options.timeoutNs } : {}),
        ...(instr.options.startPeriodNs ? { StartPeriod: instr.options.startPeriodNs } : {}),
        ...(instr.options.startIntervalNs ? { StartInterval: instr.options.startIntervalNs } : {}),
        ...(instr.options.retries ? { Retries: instr.options.retries } : {}),
      };
      createdBy = `HEALTHCHECK ${JSON.stringify(instr.test)}`;
      break;
    case 'STOPSIGNAL':
      c.StopSignal = instr.signal;
      createdBy = `STOPSIGNAL ${instr.signal}`;
      break;
    case 'ONBUILD':
      c.OnBuild = [...(c.OnBuild ?? []), instr.expression];
      createdBy = `ONBUILD ${instr.expression}`;
      break;
  }
  state.config.config = c;
  return createdBy;
}

function normalizeAbs(p: string): string {
  const parts: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') {
      continue;
    }
    if (seg === '..') {
      parts.pop();
    } else {
      parts.push(seg);
    }
  }
  return `/${parts.join('/')}`;
}
