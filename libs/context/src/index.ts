// What a client needs to plan a build context: .dockerignore rules and the files they keep.
// Kept apart from @stratum/dockerfile (whose checks pull in the image schemas) so the CLI
// loads only this for a build: every `stratum build` pays for what it loads at start.
export {
  createPathMatcher,
  parseDockerignore,
  splitParentsSource,
  type Dockerignore,
  type DockerignoreOptions,
  type PathMatcher,
} from './dockerignore';
export { MAX_DOCKERIGNORE_BYTES, planContextFiles } from './context-files';
