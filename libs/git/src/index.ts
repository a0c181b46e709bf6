/**
 * `@stratum/git`: fetch a repository at a commit (git CLI, no hooks, time-limited), turn the
 * checkout into a build context (honouring `.dockerignore`), and read forge webhooks
 * (signatures, push payloads).
 */
export {
  GitCli,
  isCommitSha,
  redact,
  type GitCliOptions,
  type GitCredentials,
  type GitSshIdentity,
  type GitTransport,
} from './git-cli';
export {
  checkGitChecksum,
  checkoutGitSource,
  isGitSource,
  parseGitSource,
  parseGitTransports,
  resolveGitSource,
  type GitCheckout,
  type GitSourceOptions,
  type GitSourceRef,
  type ResolvedGitRef,
} from './git-source';
export {
  checkoutSubmodules,
  MAX_SUBMODULE_DEPTH,
  MAX_SUBMODULES,
  resolveSubmoduleUrl,
  submoduleTransport,
  type SubmoduleFetch,
} from './git-submodules';
export {
  checkKnownHosts,
  checkRepositoryUrl,
  credentialScopeOf,
  fetchCommit,
  isSshRepositoryUrl,
  pullRequestRef,
  readCommitInfo,
  resolveBranch,
  type CommitInfo,
  type GitSource,
} from './git-fetch';
export { commitWebUrl, repositoryWebUrl } from './forge-links';
export { tarContextFiles } from './context-tar';
export { repositoryKey } from './repo-url';
export {
  jsonDepthWithin,
  normaliseDeliveryId,
  parseWebhook,
  signWebhook,
  verifyWebhook,
  webhookCredentials,
  WebhookSignatureCheck,
  type ParsedWebhook,
  type PullRequestEvent,
  type PushEvent,
  type WebhookCredentials,
  type WebhookHeaders,
} from './webhooks';
export {
  commitStateOf,
  commitStatusRequest,
  defaultForgeTarget,
  type CommitState,
  type CommitStatus,
  type ForgeRequest,
  type ForgeTarget,
} from './commit-status';
