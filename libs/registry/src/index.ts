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
  StartUploadResult,
  UploadState,
} from './registry.service';
export { RegistryKeys, UploadSessionStore } from './upload-session-store';
export type { UploadSession } from './upload-session-store';
