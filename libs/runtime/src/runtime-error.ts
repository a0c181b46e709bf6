import { StratumError, type ErrorCode } from '@stratum/contracts';

/** Why a runtime operation failed; finer than the HTTP-facing {@link ErrorCode}. */
export type RuntimeErrorReason =
  | 'OPTIONS_INVALID'
  | 'USER_UNKNOWN'
  | 'GROUP_UNKNOWN'
  | 'CONTAINER_EXISTS'
  | 'START_FAILED'
  | 'RUNC_FAILED'
  | 'NETWORK_FAILED';

const STATUS_CODE: Record<RuntimeErrorReason, ErrorCode> = {
  OPTIONS_INVALID: 'BAD_REQUEST',
  USER_UNKNOWN: 'BAD_REQUEST',
  GROUP_UNKNOWN: 'BAD_REQUEST',
  CONTAINER_EXISTS: 'CONTAINER_STATE',
  // the step's own fault (e.g. `exec: "foo": executable file not found`), not the host's
  START_FAILED: 'BAD_REQUEST',
  RUNC_FAILED: 'INTERNAL',
  // a sandbox helper (slirp4netns, iptables) failed on this host: not the step's fault
  NETWORK_FAILED: 'INTERNAL',
};

/** A runtime failure: `code` maps to an HTTP status, `reason` says what went wrong. */
export class RuntimeError extends StratumError {
  constructor(
    readonly reason: RuntimeErrorReason,
    message: string,
    detail?: Record<string, unknown>,
  ) {
    super(STATUS_CODE[reason], message, { reason, ...detail });
    this.name = 'RuntimeError';
  }
}
