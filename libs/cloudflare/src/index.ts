export { assertCredentialShape, authHeaders, credentialSecrets } from './credential.ts';
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
