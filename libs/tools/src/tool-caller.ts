import type { AuditCaller } from '@warden/audit';

/**
 * Who is calling a tool or deciding an approval: a tenant's backend (API key), an engineer's agent
 * (MCP token), or a tenant admin in the console signed in through the tenant's SSO.
 */
export interface ToolCaller {
  readonly tenantId: string;
  readonly type: 'api_key' | 'mcp_token' | 'sso';
  /** `key_…`, `mcp_…`, or the SSO admin's identifier. */
  readonly id: string;
  readonly clientName?: string | null;
  readonly clientVersion?: string | null;
  readonly ip?: string | null;
  /** MCP tokens may be limited to some connections; null = all. */
  readonly connectionNames?: readonly string[] | null;
  /** When the credential the call runs under expires (MCP tokens): the call stops there. */
  readonly expiresAt?: Date | null;
}

export function auditCaller(caller: ToolCaller): AuditCaller {
  return {
    type: caller.type,
    id: caller.id,
    client_name: caller.clientName ?? null,
    client_version: caller.clientVersion ?? null,
    ip: caller.ip ?? null,
  };
}

export const TOOL_NAMES = ['cloudflare_search', 'cloudflare_execute'] as const;
export type ToolName = (typeof TOOL_NAMES)[number];

export function isToolName(value: string): value is ToolName {
  return (TOOL_NAMES as readonly string[]).includes(value);
}
