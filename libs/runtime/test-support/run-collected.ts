import { RuncRuntime, type RunIo, type RunOptions, type RunResult } from '../src/runc-runtime';

/** A run's result with its output collected and its wall time. */
export interface CollectedRun extends RunResult {
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a container to its end, collecting stdout and stderr (the runtime tests' helper). */
export async function runCollected(
  runtime: RuncRuntime,
  id: string,
  options: RunOptions,
  io: Partial<RunIo> = {},
): Promise<CollectedRun> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const started = Date.now();
  const result = await runtime.run(id, options, {
    onStdout: (c) => out.push(c),
    onStderr: (c) => err.push(c),
    ...io,
  });
  return {
    ...result,
    stdout: Buffer.concat(out).toString(),
    stderr: Buffer.concat(err).toString(),
    ms: Date.now() - started,
  };
}
