import type { components, paths } from './generated/warden-api.ts';

/**
 * Wire types, named once from the generated `paths` so that a change of Warden's
 * OpenAPI document (and `npm run sdk:generate`) shows up here as a type error.
 * Results keep the API's snake_case field names: they are the documented JSON.
 */
type Json<T> = T extends { content: { 'application/json': infer Body } } ? Body : never;

type ConnectedAccountsPath = paths['/api/v1/connected_accounts'];
type ScopedToolsPath = paths['/api/v1/tools/scoped'];
type ExecuteToolPath = paths['/api/v1/execute_tool'];
type McpTokensPath = paths['/api/v1/mcp/tokens'];
type AuditEventsPath = paths['/api/v1/audit/events'];

export type ConnectedAccount = components['schemas']['ConnectedAccount'];
export type ConnectedAccountStatus = ConnectedAccount['status'];
/** The credential to vault: `{type: 'api_token', api_token}` or `{type: 'global_api_key', email, api_key}`. */
export type CloudflareAuthorization = Json<ConnectedAccountsPath['post']['requestBody']>['authorization'];
export type ConnectedAccountPage = Json<ConnectedAccountsPath['get']['responses'][200]>;

export type ScopedToolsPage = Json<ScopedToolsPath['get']['responses'][200]>;
export type ScopedTool = ScopedToolsPage['tools'][number];
export type ToolDefinition = components['schemas']['ToolDefinition'];

/** `{data, error?, execution_id}`: a tool failure is `data: null` with `error`, not an exception. */
export type ExecuteToolResult = Json<ExecuteToolPath['post']['responses'][200]>;
export type ToolError = NonNullable<ExecuteToolResult['error']>;

export type McpToken = Json<McpTokensPath['post']['responses'][201]>;

export type AuditEvent = components['schemas']['AuditEvent'];
export type AuditEventPage = Json<AuditEventsPath['get']['responses'][200]>;
export type AuditEventQuery = NonNullable<AuditEventsPath['get']['parameters']['query']>;

/** The error envelope of every non-2xx answer. */
export type ErrorBody = components['schemas']['Error'];
