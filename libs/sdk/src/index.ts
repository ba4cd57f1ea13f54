export { createWardenClient } from './client.ts';
export type {
  CallOptions,
  CreateConnectedAccountInput,
  CreateMcpTokenInput,
  ExecuteToolInput,
  ListConnectedAccountsOptions,
  ListScopedToolsOptions,
  WardenClient,
  WardenClientOptions,
} from './client.ts';
export { WardenApiError } from './errors.ts';
export { paginate } from './paginate.ts';
export type { Page } from './paginate.ts';
export { AgentLoopError, runAgentLoop, toAnthropicTool, toOpenAiTool } from './agent-loop.ts';
export type {
  AgentLoopResult,
  AgentMessage,
  AgentModel,
  AgentTool,
  AgentToolCall,
  AgentToolExecution,
  ModelTurn,
  OpenAiFunctionTool,
  RunAgentLoopOptions,
} from './agent-loop.ts';
export type {
  AuditEvent,
  AuditEventPage,
  AuditEventQuery,
  CloudflareAuthorization,
  ConnectedAccount,
  ConnectedAccountPage,
  ConnectedAccountStatus,
  ErrorBody,
  ExecuteToolResult,
  McpToken,
  ScopedTool,
  ScopedToolsPage,
  ToolDefinition,
  ToolError,
} from './types.ts';
export type { components, paths } from './generated/warden-api.ts';
