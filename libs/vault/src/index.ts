export { DataKeyCache } from './data-key-cache.ts';
export type { DataKeyCacheOptions } from './data-key-cache.ts';
export {
  CURRENT_SEAL_FORMAT,
  SYSTEM_TENANT,
  createEnvelope,
  sealIdentity,
  sealedColumns,
  sealedFromColumns,
} from './envelope.ts';
export type { Envelope, SealFormat, SealIdentity, SealedKind, SealedSecret } from './envelope.ts';
export { DEFAULT_CONNECTION_NAME, createTenantService, validateTenantName } from './tenants.service.ts';
export type { ApiKeyView, IssuedApiKey, TenantCaller, TenantService, TenantView } from './tenants.service.ts';
export {
  MAX_OPENABLE_ACCOUNTS,
  createConnectedAccountService,
  validateIdentifier,
} from './connected-accounts.service.ts';
export type { ActorContext, LifecycleAudit } from './lifecycle.ts';
export type {
  AccountChange,
  ConnectedAccount,
  ConnectedAccountEventType,
  ConnectedAccountEvents,
  ConnectedAccountService,
  CredentialVerifier,
  ListConnectedAccountsQuery,
  OpenableAccount,
  OpenableQuery,
} from './connected-accounts.service.ts';
export { SEALED_TABLES, createKeyRotationService } from './key-rotation.service.ts';
export type { KeyRotationService, RewrapReport } from './key-rotation.service.ts';
export {
  MAX_MCP_TOKEN_SECONDS,
  MIN_MCP_TOKEN_SECONDS,
  createMcpTokenService,
  parseExpiry,
  ssoPrincipalRef,
} from './mcp-tokens.service.ts';
export type { McpSession, McpToken, McpTokenListing, McpTokenService } from './mcp-tokens.service.ts';
export { connectedAccountJson } from './connected-account.json.ts';
export {
  createSsoConfigService,
  removeSsoConsoleAdmin,
  validateSsoConfigInput,
} from './sso-configs.service.ts';
export type { DomainProof } from './sso-domain-claims.ts';
export { recheckOf } from './sso-domain-claims.ts';
export { createSsoDomainRecheck, recheckPeriodMs } from './sso-domain-recheck.ts';
export type { RecheckReport, SsoDomainRecheck } from './sso-domain-recheck.ts';
export type {
  SsoConfig,
  SsoConfigInput,
  SsoConfigService,
  SsoDomain,
  SsoDomainStatus,
} from './sso-configs.service.ts';
