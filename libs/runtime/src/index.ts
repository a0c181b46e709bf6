/**
 * @stratum/runtime — run processes in containers with runc.
 *
 * A caller prepares a root filesystem (an overlay mount), then either builds an OCI runtime
 * spec with {@link generateRuntimeSpec} or lets {@link RuncRuntime.run} do it and run the
 * process, streaming stdout/stderr and enforcing timeouts, cancellation and limits.
 *
 * OCI runtime spec: https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config.md
 * (Linux part: https://github.com/opencontainers/runtime-spec/blob/v1.0.2/config-linux.md)
 */
export {
  generateRuntimeSpec,
  buildEnv,
  OCI_VERSION,
  DEFAULT_PATH,
  DEFAULT_CAPABILITIES,
  DEFAULT_MASKED_PATHS,
  DEFAULT_READONLY_PATHS,
  DEFAULT_NOFILE,
  type RuntimeSpecOptions,
  type BindMount,
  type TmpfsMount,
  type NetworkMode,
  type ProcessUser,
  type UsernsMapping,
} from './runtime-spec';
export { resolveUser, type ResolvedUser } from './user';
export {
  RuncRuntime,
  makeTraversable,
  withHiddenMounts,
  type RuncRuntimeOptions,
  type RunOptions,
  type RunIo,
  type RunResult,
  type SweepResult,
} from './runc-runtime';
export { RuntimeError, type RuntimeErrorReason } from './runtime-error';
export { hybridCgroup2Mounts } from './cgroups';
export {
  BLOCKED_SYSCALLS,
  DEFAULT_SECCOMP_PROFILE,
  loadSeccompProfile,
  seccompFor,
  type SeccompProfile,
} from './seccomp';
export {
  SandboxNetwork,
  sandboxRules,
  hostIpv4Addresses,
  stepNameservers,
  SLIRP_DNS,
  SLIRP_GUEST_ADDRESS,
  SLIRP_SUBNET,
  type SandboxTools,
  type SandboxAddresses,
} from './sandbox-network';
export type * from './oci-runtime-spec';
export {
  BINFMT_MISC_DIR,
  detectHostPlatforms,
  handlerPlatform,
  parseBinfmtHandler,
  servedPlatforms,
  type BinfmtHandler,
  type HostPlatforms,
} from './host-platforms';
