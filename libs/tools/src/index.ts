export {
  MAX_RULES,
  describePolicy,
  evaluatePolicy,
  isWrite,
  parsePolicy,
  pathMatches,
  policyRefusal,
} from './policy.ts';
export type {
  ApprovalRequirement,
  Policy,
  PolicyDecision,
  PolicyMethod,
  PolicyRequest,
  PolicyRule,
} from './policy.ts';
export { MAX_PATH_LENGTH, MAX_PATH_SEGMENTS, canonicalizePath } from './canonical-path.ts';
export { explainPolicy } from './policy-explain.ts';
export type { PolicyExplanation } from './policy-explain.ts';
export { MAX_PATTERN_GLOBSTARS, MAX_PATTERN_SEGMENTS, patternProblem } from './policy-matcher.ts';
export { classifyGraphqlBody, isGraphqlRequest } from './graphql-operation.ts';
export type { GraphqlClassification } from './graphql-operation.ts';
export {
  CREDENTIAL_KINDS,
  CREDENTIAL_KIND_DESCRIPTIONS,
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
  ExecuteToolOptions,
  ExecuteToolService,
} from './execute-tool.service.ts';
export { Execution } from './execution.ts';
export { createStepRunner } from './step-runner.ts';
export type { StepRunnerDeps } from './step-runner.ts';
export {
  DEFAULT_PLAN_LIMITS,
  ExecutionPlan,
  approvalEventJson,
  approvalJson,
  canonicalJson,
  createApprovalService,
  planDigest,
} from './approvals.service.ts';
export type {
  PlanLimits,
  ApprovalEvents,
  ApprovalService,
  ApprovalStep,
  StepRunner,
  ApprovalView,
  Approver,
  PlanStep,
  StepResult,
} from './approvals.service.ts';
export type { ExecuteToolResult } from './execution.ts';
export { createCallContextSource, createLiveCalls } from './call-context.ts';
export type {
  CallContext,
  CallContextSource,
  CallTarget,
  Invalidation,
  LiveCall,
  LiveCalls,
  TenantToolSettings,
} from './call-context.ts';
export { createUpstreamGateway } from './upstream-gateway.ts';
export { PENDING_APPROVAL_RESPONSE } from './upstream-gateway.ts';
export type {
  GatewayRequest,
  HeldWrite,
  PlanSink,
  UpstreamGateway,
  UpstreamParty,
} from './upstream-gateway.ts';
export { createTenantSettingsService, effectiveSettings, withinCeiling } from './tenant-settings.service.ts';
export type { OperatorDefaults, SettingsPatch, TenantSettingsService } from './tenant-settings.service.ts';
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
export { createAuditMaintenance } from './audit-maintenance.service.ts';
export type { AuditMaintenance, AuditMaintenanceDeps } from './audit-maintenance.service.ts';
export { createCredentialVerifier, createReverifier } from './credential-verification.ts';
export type { VerificationDeps } from './credential-verification.ts';
export { DEFAULT_R2_MAX_OBJECT_BYTES, createR2Gateway, r2PolicyPath } from './r2-gateway.ts';
export type { R2Gateway, R2GatewayDeps, R2Keys } from './r2-gateway.ts';
export { createR2ByteBudget } from './r2-bytes.ts';
export type { R2ByteBudget, R2ByteBudgetOptions } from './r2-bytes.ts';
export { DEFAULT_TAIL_EVENT_BYTES, createTailGateway, tailDecision } from './tail-gateway.ts';
export type { TailGateway, TailGatewayDeps } from './tail-gateway.ts';
export { truncationJson, truncationNote } from './truncation.ts';
