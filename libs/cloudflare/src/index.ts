export {
  REDACTED,
  assertCredentialShape,
  authHeaders,
  credentialScrubber,
  credentialSecrets,
} from './credential.ts';
export type { CloudflareAccount, CloudflareCredential, VerifiedCredential } from './credential.ts';
export { createCloudflareClient } from './cloudflare.client.ts';
export type {
  CloudflareClient,
  CloudflareClientOptions,
  CloudflareMessage,
  CloudflareRequest,
  CloudflareResponse,
  HttpMethod,
} from './cloudflare.client.ts';
export { verifyCredential } from './verify.ts';
export { TAIL_PROTOCOL, collectTail } from './tail.client.ts';
export type { TailApiFilter, TailCollectOptions, TailCollection, TailFilterMessage } from './tail.client.ts';
export {
  CIRCULAR_REF_KEY,
  OPENAPI_METHODS,
  UNRESOLVED_REF_KEY,
  createRefResolver,
  processOpenApi,
} from './spec/openapi-processor.ts';
export type {
  OpenApiMethod,
  OpenApiProcessOptions,
  OperationInfo,
  ProcessedDocument,
  ProcessedOpenApi,
  ProcessedOperation,
  ProcessedPathItem,
} from './spec/openapi-processor.ts';
export { createOperationMatcher } from './spec/operation-matcher.ts';
export type { OperationMatch, OperationMatcher } from './spec/operation-matcher.ts';
export {
  CLOUDFLARE_PERMISSIONS_EXTENSION,
  cloudflarePermissionsOf,
  cloudflareProductOf,
  processCloudflareSpec,
} from './spec/cloudflare-spec.ts';
export { DEFAULT_CLOUDFLARE_SPEC_URL, cloudflareSpecProcessor, createSpecStore } from './spec/spec-store.ts';
export type {
  LoadedSpec,
  SpecProcessor,
  SpecReload,
  SpecStore,
  SpecStoreOptions,
} from './spec/spec-store.ts';
export { R2_JURISDICTIONS, createR2Client, r2CredentialsFromApiToken, r2Secrets } from './r2.client.ts';
export type {
  R2Client,
  R2ClientOptions,
  R2Credentials,
  R2HttpRequest,
  R2HttpResponse,
  R2Jurisdiction,
  R2Method,
} from './r2.client.ts';
