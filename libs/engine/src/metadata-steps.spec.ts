import { createStageScope, expandInstruction, parseDockerfile, planBuild } from '@stratum/dockerfile';
import { cloneState, ImageState, scratchState } from './image-state';
import { applyMetadata, isMetadataInstruction } from './metadata-steps';

/** Expands and applies the instructions (after `FROM scratch`) as the engine does; returns the state. */
function apply(
  lines: string,
  state: ImageState = scratchState(),
): { state: ImageState; createdBy: string[] } {
  const df = parseDockerfile(`FROM scratch\n${lines}\n`);
  const scope = createStageScope(planBuild(df));
  const createdBy: string[] = [];
  for (const raw of df.stages[0].instructions) {
    const i = expandInstruction(raw, scope);
    scope.apply(i);
    if (!isMetadataInstruction(i)) {
      throw new Error(`${i.kind} is not a metadata instruction`);
    }
    createdBy.push(applyMetadata(state, i));
  }
  return { state, createdBy };
}

describe('applyMetadata', () => {
  it('ENV keeps the order of existing keys and replaces values in place', () => {
    const { state, createdBy } = apply('ENV A=1 B=2\nENV A=3 C=4');
    expect(state.config.config?.Env).toEqual(['A=3', 'B=2', 'C=4']);
    expect(createdBy[1]).toBe('ENV A=3 C=4');
  });

  it('WORKDIR resolves relative paths against the previous one and normalizes', () => {
    const { state, createdBy } = apply('WORKDIR /app\nWORKDIR src/../lib/\nWORKDIR ./x');
    expect(state.config.config?.WorkingDir).toBe('/app/lib/x');
    expect(createdBy).toEqual(['WORKDIR /app', 'WORKDIR /app/lib', 'WORKDIR /app/lib/x']);
  });

  it('EXPOSE defaults to tcp; VOLUME and LABEL accumulate; USER and STOPSIGNAL are kept as written', () => {
    const { state } = apply(
      'EXPOSE 80 53/UDP\nEXPOSE 8080/tcp\nVOLUME /data\nVOLUME ["/a", "/b"]\nLABEL a=1 "b c"=2\nLABEL a=3\nUSER 1000:1000\nSTOPSIGNAL SIGINT',
    );
    const c = state.config.config;
    expect(Object.keys(c?.ExposedPorts ?? {}).sort()).toEqual(['53/udp', '80/tcp', '8080/tcp']);
    expect(Object.keys(c?.Volumes ?? {}).sort()).toEqual(['/a', '/b', '/data']);
    expect(c?.Labels).toEqual({ a: '3', 'b c': '2' });
    expect(c?.User).toBe('1000:1000');
    expect(c?.StopSignal).toBe('SIGINT');
  });

  it('CMD and ENTRYPOINT: shell form goes through SHELL, exec form is kept', () => {
    const { state } = apply('SHELL ["/bin/bash", "-ec"]\nCMD echo hi\nENTRYPOINT ["/entry"]');
    expect(state.config.config?.Shell).toEqual(['/bin/bash', '-ec']);
    // CMD was set in this stage: ENTRYPOINT keeps it
    expect(state.config.config?.Cmd).toEqual(['/bin/bash', '-ec', 'echo hi']);
    expect(state.config.config?.Entrypoint).toEqual(['/entry']);
  });

  it('ENTRYPOINT clears a CMD inherited from the base, not one set in the stage', () => {
    const base = apply('CMD ["sh"]').state;
    const child = cloneState(base);
    apply('ENTRYPOINT ["/entry"]', child);
    expect(child.config.config?.Cmd).toBeUndefined();
    const again = cloneState(base);
    apply('CMD ["serve"]\nENTRYPOINT ["/entry"]', again);
    expect(again.config.config?.Cmd).toEqual(['serve']);
  });

  it('HEALTHCHECK, ONBUILD, MAINTAINER', () => {
    const { state } = apply(
      'HEALTHCHECK --interval=5s --retries=3 CMD curl -f http://localhost/\nONBUILD RUN echo child\nMAINTAINER me@example.com',
    );
    expect(state.config.config?.Healthcheck).toEqual({
      Test: ['CMD-SHELL', 'curl -f http://localhost/'],
      Interval: 5_000_000_000,
      Retries: 3,
    });
    expect(state.config.config?.OnBuild).toEqual(['RUN echo child']);
    expect(state.config.author).toBe('me@example.com');
  });

  it('ARG changes nothing in the config', () => {
    const { state, createdBy } = apply('ARG A=1 B');
    expect(state.config.config).toEqual({});
    expect(createdBy).toEqual(['ARG A=1 B']);
  });
});
