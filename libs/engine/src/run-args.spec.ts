import { parseDockerfile, RunInstruction } from '@stratum/dockerfile';
import { runArgs } from './run-step';

const run = (text: string): RunInstruction => {
  const i = parseDockerfile(`FROM scratch\n${text}\n`).stages[0].instructions[0];
  if (i.kind !== 'RUN') {
    throw new Error('not a RUN');
  }
  return i;
};
const SH = ['/bin/sh', '-c'];

describe('runArgs', () => {
  it('exec form is used as written, whatever the shell', () => {
    expect(runArgs(run('RUN ["echo", "a b", "$HOME"]'), ['/bin/bash', '-c'])).toEqual([
      'echo',
      'a b',
      '$HOME',
    ]);
  });

  it('shell form runs through the stage shell', () => {
    expect(runArgs(run('RUN echo $HOME && ls'), SH)).toEqual(['/bin/sh', '-c', 'echo $HOME && ls']);
    expect(runArgs(run('RUN echo hi'), ['pwsh', '-Command'])).toEqual(['pwsh', '-Command', 'echo hi']);
  });

  it('a heredoc alone is the script', () => {
    expect(runArgs(run('RUN <<EOF\nset -e\necho one\necho two\nEOF'), SH)).toEqual([
      '/bin/sh',
      '-c',
      'set -e\necho one\necho two\n',
    ]);
  });

  it('heredocs fed to a command are appended for the shell to read', () => {
    expect(runArgs(run('RUN cat <<A <<B > /f\nfirst\nA\nsecond\nB'), SH)).toEqual([
      '/bin/sh',
      '-c',
      'cat <<A <<B > /f\nfirst\nA\nsecond\nB\n',
    ]);
  });

  it('<<- strips leading tabs from the body', () => {
    expect(runArgs(run('RUN <<-EOF\n\techo tab\n\tEOF'), SH)).toEqual(['/bin/sh', '-c', 'echo tab\n']);
  });
});
