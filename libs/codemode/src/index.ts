export { createSandboxPool } from './sandbox-pool.ts';
export type {
  SandboxChildKind,
  SandboxChildStats,
  SandboxPool,
  SandboxPoolOptions,
  SandboxPoolStats,
  SpecSource,
} from './sandbox-pool.ts';
export { DEFAULT_LIMITS } from './sandbox.types.ts';
export type {
  ExecuteOptions,
  R2Operation,
  R2Request,
  R2Upstream,
  TailRequest,
  TailUpstream,
  SandboxErrorCode,
  SandboxLimits,
  SandboxResult,
  SandboxStats,
  SearchAccess,
  SearchOptions,
  Truncation,
  Upstream,
  UpstreamContext,
  UpstreamRequest,
  UpstreamResponse,
} from './sandbox.types.ts';
export { CHARS_PER_TOKEN, estimateTokens, fitResult } from './result-budget.ts';
export { validateUpstreamRequest } from './request-validation.ts';
export { validateR2Request } from './r2-validation.ts';
export { R2_DESCRIPTION } from './r2-description.ts';
export {
  DEFAULT_TAIL_MAX_EVENTS,
  MAX_TAIL_EVENTS,
  MAX_TAIL_SECONDS,
  validateTailRequest,
} from './tail-validation.ts';
export { TAIL_DESCRIPTION } from './tail-description.ts';
export type { BudgetedResult } from './result-budget.ts';
export { toolDefinitions, toolsListJson } from './tool-definitions.ts';
export type { JsonSchemaObject, ToolDefinition, ToolDefinitionOptions } from './tool-definitions.ts';
