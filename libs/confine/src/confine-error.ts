import { StratumError } from '@stratum/contracts';

/** The codes a confinement failure carries (each maps to 400 in the API's filter). */
export type ConfineErrorCode = 'PATH_INVALID' | 'PATH_ESCAPE' | 'FILE_TOO_LARGE';

/**
 * A user-given name or path that cannot become a path below its root: a name that fails the
 * strict check (`PATH_INVALID`), a path or symlink that leads out of the root (`PATH_ESCAPE`),
 * or a file read through {@link readFileBeneath} that is over its limit (`FILE_TOO_LARGE`).
 * Messages name the user's input only, never what a symlink pointed at on the host.
 */
export class ConfineError extends StratumError {
  constructor(
    override readonly code: ConfineErrorCode,
    message: string,
  ) {
    super(code, message);
    this.name = 'ConfineError';
  }
}
