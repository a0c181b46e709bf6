import { checkDockerfile, expandStage, parseDockerfile, planBuild } from '@stratum/dockerfile';
import { probeCompressors } from '@stratum/layers';

/**
 * A Dockerfile that uses every instruction and the common forms of each (two stages, a
 * build arg, expansion, exec and shell form, RUN --mount, heredoc, COPY --from), for
 * {@link warmUpEngine}. It must plan and pass the checks: a unit test holds it to that.
 */
export const WARM_UP_DOCKERFILE = `# syntax=docker/dockerfile:1
ARG BASE=busybox:latest
FROM \${BASE} AS build
ARG VERSION=1.0
ENV APP_HOME=/app PATH=/usr/local/bin:/usr/bin:/bin
WORKDIR $APP_HOME
COPY --chmod=0644 src/ ./src/
ADD files.tar /opt/
RUN --mount=type=cache,target=/root/.cache echo "$VERSION" > version.txt && rm -rf /tmp/*
RUN <<EOF
set -e
mkdir -p out
EOF
RUN ["/bin/sh", "-c", "ls -l $APP_HOME"]

FROM scratch
COPY --from=build /app/out/ /srv/
LABEL org.opencontainers.image.title="warm-up" version="\${VERSION:-none}"
USER 65534:65534
EXPOSE 8080/tcp
VOLUME ["/data"]
SHELL ["/bin/sh", "-c"]
STOPSIGNAL SIGTERM
ONBUILD RUN echo built-from-this
HEALTHCHECK --interval=30s CMD ["/srv/check"]
ENTRYPOINT ["/srv/app"]
CMD ["--help"]
`;

/**
 * Pays a fresh worker process's one-time costs before it takes a job, not in its first
 * build: the gzip tools are probed (see probeCompressors), and the Dockerfile parser, planner,
 * checks and expansion run once on {@link WARM_UP_DOCKERFILE}. V8 compiles functions when they
 * first run: a fresh worker took ~15 ms of its main thread to parse, plan and check an 18-line
 * Dockerfile, well under 1 ms the next time. Touches no store, file or container.
 * Returns the number of instructions the sample planned to (what the unit test checks).
 */
export async function warmUpEngine(): Promise<number> {
  const probed = probeCompressors();
  const plan = planBuild(parseDockerfile(WARM_UP_DOCKERFILE));
  const checks = checkDockerfile(WARM_UP_DOCKERFILE);
  if (checks.error !== undefined) {
    throw new Error(`warm-up Dockerfile fails its checks: ${checks.error}`);
  }
  let instructions = 0;
  for (const stage of plan.stages) {
    instructions += expandStage(plan, stage.index).length;
  }
  await probed;
  return instructions;
}
