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
export type { BudgetedResult } from './result-budget.ts';
export { toolDefinitions, toolsListJson } from './tool-definitions.ts';
export type { JsonSchemaObject, ToolDefinition, ToolDefinitionOptions } from './tool-definitions.ts';
