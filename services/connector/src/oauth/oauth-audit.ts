import { mcpOAuthRecord } from '@warden/audit';
import type { AuditCaller, AuditOutcome, AuditStore } from '@warden/audit';

export type OAuthAuditAction =
  | 'mcp_oauth.sign_in'
  | 'mcp_oauth.consent'
  | 'mcp_oauth.consent_revoked'
  | 'mcp_oauth.token_issued'
  | 'mcp_oauth.token_revoked'
  | 'mcp_oauth.refresh_reuse';

export interface OAuthAuditEvent {
  readonly action: OAuthAuditAction;
  readonly outcome: AuditOutcome;
  readonly identifier: string;
  readonly caller: AuditCaller;
  readonly error?: { readonly code: string; readonly message: string } | null;
}

/** Who acted in a sign-in: the engineer's browser or MCP client, named by its OAuth client and grant. */
export function oauthCaller(input: {
  grantId?: string | null;
  clientName: string | null;
  ip: string | null;
}): AuditCaller {
  return {
    type: 'mcp_token',
    id: input.grantId ? grantTokenId(input.grantId) : null,
    client_name: input.clientName,
    client_version: null,
    ip: input.ip,
  };
}

/** Grants are named `oag_…` outside the authorization server (MCP sessions, audit, the consents API). */
export function grantTokenId(grantId: string): string {
  return `oag_${grantId}`;
}

export function grantIdOf(tokenId: string): string | null {
  return tokenId.startsWith('oag_') && tokenId.length > 4 ? tokenId.slice(4) : null;
}

export type OAuthAudit = (tenantId: string, event: OAuthAuditEvent) => Promise<void>;

export function createOAuthAudit(deps: {
  audit: Pick<AuditStore, 'append'>;
  tenantSettings: (tenantId: string) => Promise<{ retentionDays: number }>;
}): OAuthAudit {
  return async (tenantId, event) => {
    const { retentionDays } = await deps.tenantSettings(tenantId);
    await deps.audit.append(
      tenantId,
      [
        mcpOAuthRecord(
          { caller: event.caller, identifier: event.identifier },
          { action: event.action, outcome: event.outcome, error: event.error ?? null },
        ),
      ],
      { retentionDays },
    );
  };
}
