export {
  MAX_RULES,
  describePolicy,
  evaluatePolicy,
  isWrite,
  parsePolicy,
  pathMatches,
  policyRefusal,
} from './policy.ts';
export type { Policy, PolicyDecision, PolicyMethod, PolicyRequest, PolicyRule } from './policy.ts';
export { MAX_PATH_LENGTH, MAX_PATH_SEGMENTS, canonicalizePath } from './canonical-path.ts';
export { MAX_PATTERN_GLOBSTARS, MAX_PATTERN_SEGMENTS, patternProblem } from './policy-matcher.ts';
export { classifyGraphqlBody, isGraphqlRequest } from './graphql-operation.ts';
export type { GraphqlClassification } from './graphql-operation.ts';
export {
  CREDENTIAL_KINDS,
  credentialOperation,
  credentialSecretsRevealed,
  mintedCredential,
  withholdCredentialSecrets,
} from './credential-guard.ts';
export type {
  CredentialKind,
  CredentialOperation,
  CredentialOperationsPolicy,
  MintedCredentialRef,
} from './credential-guard.ts';
export { createMintedCredentialStore, revokeMintedCredentials } from './minted-credentials.ts';
export type { MintedCredential, MintedCredentialStore, MintedRevocation } from './minted-credentials.ts';
export { createPolicyStore } from './policy.store.ts';
export type { PolicyStore } from './policy.store.ts';
export { MAX_CODE_LENGTH, createExecuteToolService } from './execute-tool.service.ts';
export type {
  ExecuteToolDeps,
  ExecuteToolInput,
  ExecuteToolResult,
  ExecuteToolService,
  TenantToolSettings,
} from './execute-tool.service.ts';
export { createScopedToolsService, definitionsFor } from './scoped-tools.service.ts';
export type { ScopedTool, ScopedToolsService } from './scoped-tools.service.ts';
export {
  activeAccounts,
  resolveAccount,
  resolveCloudflareAccount,
  upstreamPrincipal,
} from './account-resolution.ts';
export { TOOL_NAMES, auditCaller, isToolName } from './tool-caller.ts';
export type { ToolCaller, ToolName } from './tool-caller.ts';
export type {
  CodeRunner,
  OperationInfo,
  SandboxOutcome,
  SpecLookup,
  ToolDefinition,
  TruncationInfo,
  ToolDefinitionSource,
  UpstreamRequest,
  UpstreamResponse,
} from './ports.ts';
export { createDeliveryService } from './delivery.service.ts';
export type { DeliveryOptions, DeliveryService, DeliveryView, SinkView } from './delivery.service.ts';
export { createOffboardingService } from './offboarding.service.ts';
export type { OffboardingResult, OffboardingService, UpstreamRevocation } from './offboarding.service.ts';
