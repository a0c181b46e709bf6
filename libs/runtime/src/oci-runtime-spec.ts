/**
 * The subset of the OCI runtime specification's `config.json` that Stratum writes.
 * Field names and meanings follow the spec exactly, so the object serialises straight to
 * the bundle's config.json.
 * https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config.md
 * https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config-linux.md
 */

/** https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config.md#user */
export interface OciUser {
  uid: number;
  gid: number;
  umask?: number;
  additionalGids?: number[];
}

/** https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config.md#linux-process */
export interface OciCapabilities {
  bounding?: string[];
  effective?: string[];
  inheritable?: string[];
  permitted?: string[];
  ambient?: string[];
}

/** https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config.md#posix-process */
export interface OciRlimit {
  type: string;
  hard: number;
  soft: number;
}

/** https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config.md#process */
export interface OciProcess {
  terminal?: boolean;
  user: OciUser;
  args: string[];
  env?: string[];
  cwd: string;
  capabilities?: OciCapabilities;
  rlimits?: OciRlimit[];
  noNewPrivileges?: boolean;
  oomScoreAdj?: number;
}

/** https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config.md#root */
export interface OciRoot {
  path: string;
  readonly?: boolean;
}

/** https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config.md#mounts */
export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

/** https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config-linux.md#namespaces */
export type OciNamespaceType = 'pid' | 'network' | 'mount' | 'ipc' | 'uts' | 'user' | 'cgroup';

export interface OciNamespace {
  type: OciNamespaceType;
  path?: string;
}

/** https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config-linux.md#allowed-device-list */
export interface OciDeviceCgroup {
  allow: boolean;
  type?: 'a' | 'c' | 'b';
  major?: number;
  minor?: number;
  access?: string;
}

/** https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config-linux.md#control-groups */
export interface OciResources {
  devices?: OciDeviceCgroup[];
  memory?: { limit?: number; reservation?: number; swap?: number; disableOOMKiller?: boolean };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string };
  pids?: { limit: number };
}

/** https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config-linux.md#seccomp */
export interface OciSeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: string;
}

export interface OciSeccompRule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: OciSeccompArg[];
}

export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  syscalls: OciSeccompRule[];
}

/** https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config-linux.md#user-namespace-mappings */
export interface OciIdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

/** https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config-linux.md */
export interface OciLinux {
  namespaces: OciNamespace[];
  uidMappings?: OciIdMapping[];
  gidMappings?: OciIdMapping[];
  resources?: OciResources;
  cgroupsPath?: string;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  sysctl?: Record<string, string>;
  seccomp?: OciSeccomp;
}

/** The root of config.json. https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config.md */
export interface OciRuntimeSpec {
  ociVersion: string;
  process: OciProcess;
  root: OciRoot;
  hostname?: string;
  mounts: OciMount[];
  linux: OciLinux;
  annotations?: Record<string, string>;
}
