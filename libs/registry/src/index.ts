export { parseContentRange, parseRangeHeader, uploadRangeHeader } from './byte-range';
export type { InclusiveRange } from './byte-range';
export {
  REGISTRY_ERROR_STATUS,
  RegistryError,
  toRegistryError,
  toRegistryErrorResponse,
} from './registry-error';
export type { RegistryErrorBody, RegistryErrorCode, RegistryErrorResponse } from './registry-error';
export { parseRegistryPath, routeAction } from './registry-route';
export type { RegistryAction, RegistryRoute } from './registry-route';
export { parsePageQuery, readLimited, RegistryService, storedMediaType } from './registry.service';
export type {
  BlobContent,
  BlobInfo,
  ManifestContent,
  Page,
  PageQuery,
  ReferrersIndex,
  RegistryServiceOptions,
  ManifestEvent,
  RepositoryReadCheck,
  StartUploadResult,
  UploadState,
} from './registry.service';
export { RegistryKeys, UploadSessionStore } from './upload-session-store';
export type { UploadSession } from './upload-session-store';
export { ImageTransfer, blobsOf } from './image-transfer';
export {
  checkIndexEntries,
  DEFAULT_INDEX_LIMITS,
  indexChildren,
  indexLimitError,
  walkManifests,
} from './index-walk';
export type { IndexLimits } from './index-walk';
export type { BlobOutcome, TransferProgress } from './image-transfer';
export {
  ImagePusher,
  isTransientPushError,
  newPushRecord,
  parsePushTarget,
  PushFailedError,
} from './image-pusher';
export type { PushTarget } from './image-pusher';
export { MirrorKeys, mirrorWriteConflict, PullThroughCache } from './pull-through-cache';
export type { MirrorEntry } from './pull-through-cache';
export { PUSH_CREDENTIALS_KEY_SETTING, PushKeys, PushRecordStore } from './push-record-store';
export { pushIdForBuild, PushSubmitter, pushSubmitterOptions } from './push-submitter';
export type { PushQueue, PushSubmission, PushSubmitterOptions } from './push-submitter';
export { DEFAULT_PLATFORM, RegistryClient, RemoteRegistryError, selectPlatform } from './registry-client';
export type {
  RegistryClientOptions,
  RegistryCredentials,
  RemoteBlob,
  RemoteManifest,
} from './registry-client';
export { isLoopbackRegistry, RegistryClients } from './registry-clients';
export type { RegistryClientsOptions } from './registry-clients';
export {
  bearerChallenge,
  formatScope,
  parseScopes,
  RegistryTokenIssuer,
  scopesAllow,
} from './registry-token';
export type { RegistryTokenClaims, ResourceScope } from './registry-token';
export { ImagePullError, RemoteImageResolver } from './remote-image-resolver';
export type { PullAttempt, PullSettings, ResolvedRemoteImage } from './remote-image-resolver';
export { familiarName, ImagePuller } from './image-puller';
export type { PullEvent, PullPlan, PullRequest } from './image-puller';
