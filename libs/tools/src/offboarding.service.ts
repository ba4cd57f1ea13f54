import type { AuditRecordInput, AuditStore } from '@warden/audit';
import type { Clock, Logger } from '@warden/core';
import { isWardenError, systemClock } from '@warden/core';
import type { CloudflareClient, CloudflareCredential } from '@warden/cloudflare';
import type { ConnectedAccount, ConnectedAccountService, McpTokenService } from '@warden/vault';
import { validateIdentifier } from '@warden/vault';
import type { ToolCaller } from './tool-caller.ts';
import { auditCaller } from './tool-caller.ts';

export interface UpstreamRevocation {
  readonly revoked: boolean;
  readonly detail: string;
}

interface UpstreamAttempt extends UpstreamRevocation {
  readonly request?: {
    readonly path: string;
    readonly template: string;
    readonly status: number | null;
    readonly cfRay: string | null;
  };
}

export interface OffboardingResult {
  readonly revokedConnectedAccounts: ReadonlyArray<{
    readonly id: string;
    readonly upstream?: UpstreamRevocation;
  }>;
  readonly revokedMcpTokens: number;
}

/**
 * Cuts an identity off in one step: every connected account revoked (credentials
 * crypto-shredded), every MCP token and OAuth grant revoked, live MCP sessions closed on every replica
 * (through `closeSessions`), and running executions stopped at their next upstream
 * request (they re-check the account before each one). Optionally deletes the
 * Cloudflare API tokens themselves, where the token is allowed to.
 */
export function createOffboardingService(deps: {
  accounts: Pick<ConnectedAccountService, 'list' | 'openCredential' | 'revoke'>;
  mcpTokens: Pick<McpTokenService, 'revokeAllFor'>;
  cloudflare: CloudflareClient;
  audit: AuditStore;
  tenantSettings: (tenantId: string) => Promise<{ retentionDays: number }>;
  closeSessions: (tenantId: string, identifier: string) => Promise<void>;
  /** Revokes the identity's OAuth grants from MCP sign-in (with their tokens); returns how many. */
  revokeOAuthGrants?: (tenantId: string, identifier: string) => Promise<number>;
  logger: Logger;
  clock?: Clock;
}) {
  const clock = deps.clock ?? systemClock;

  async function revokeUpstream(
    account: ConnectedAccount,
    credential: CloudflareCredential,
  ): Promise<UpstreamAttempt> {
    if (credential.type === 'global_api_key') {
      return {
        revoked: false,
        detail: 'a Global API Key cannot be deleted through the API; change it in the Cloudflare dashboard',
      };
    }
    const tokenId = account.cloudflare.tokenId;
    if (!tokenId) return { revoked: false, detail: 'the token id is unknown' };
    const accountToken = account.tokenKind === 'account';
    const path = accountToken
      ? `/accounts/${encodeURIComponent(account.cloudflare.accounts[0]?.id ?? '')}/tokens/${encodeURIComponent(tokenId)}`
      : `/user/tokens/${encodeURIComponent(tokenId)}`;
    const template = accountToken ? '/accounts/{account_id}/tokens/{token_id}' : '/user/tokens/{token_id}';
    try {
      const response = await deps.cloudflare.send(credential, { method: 'DELETE', path });
      const request = { path, template, status: response.status, cfRay: response.cfRay };
      if (response.success) return { revoked: true, detail: `Cloudflare deleted token ${tokenId}`, request };
      const reason = response.errors.map((e) => e.message).join('; ') || `HTTP ${response.status}`;
      return {
        request,
        revoked: false,
        detail:
          response.status === 403
            ? `the token may not delete itself (needs the API Tokens Write permission): ${reason}`
            : `Cloudflare refused: ${reason}`,
      };
    } catch (error) {
      return {
        revoked: false,
        detail: isWardenError(error) ? error.message : 'Cloudflare could not be reached',
      };
    }
  }

  return {
    async offboard(
      caller: ToolCaller,
      identifierInput: string,
      options: { revokeUpstream: boolean },
    ): Promise<OffboardingResult> {
      const identifier = validateIdentifier(identifierInput);
      const started = clock.now();
      const live: ConnectedAccount[] = [];
      let pageToken: string | undefined;
      do {
        const page = await deps.accounts.list(caller.tenantId, {
          identifier,
          pageSize: 100,
          ...(pageToken ? { pageToken } : {}),
        });
        live.push(...page.items.filter((a) => a.status !== 'REVOKED'));
        pageToken = page.nextPageToken ?? undefined;
      } while (pageToken);

      const revoked: Array<{ id: string; upstream?: UpstreamRevocation }> = [];
      const records: AuditRecordInput[] = [];
      const base = {
        execution_id: null,
        identifier,
        caller: auditCaller(caller),
        agent_run_id: null,
        tool_name: null,
        request_bytes: null,
        response_bytes: null,
        code_sha256: null,
        code: null,
      };
      for (const account of live) {
        let upstream: UpstreamAttempt | undefined;
        if (options.revokeUpstream) {
          try {
            const { credential } = await deps.accounts.openCredential(caller.tenantId, account.id);
            upstream = await revokeUpstream(account, credential);
          } catch (error) {
            upstream = {
              revoked: false,
              detail: isWardenError(error) ? error.message : 'the credential could not be opened',
            };
          }
        }
        await deps.accounts.revoke(caller.tenantId, account.id);
        revoked.push({
          id: account.id,
          ...(upstream ? { upstream: { revoked: upstream.revoked, detail: upstream.detail } } : {}),
        });
        const at = clock.now().toISOString();
        if (upstream?.request) {
          records.push({
            ...base,
            occurred_at: at,
            kind: 'upstream_request',
            action: 'cloudflare.token_delete',
            outcome: upstream.revoked ? 'success' : 'error',
            connected_account_id: account.id,
            upstream: {
              method: 'DELETE',
              path_template: upstream.request.template,
              path: upstream.request.path,
              status: upstream.request.status,
              cf_ray: upstream.request.cfRay,
            },
            error: upstream.revoked ? null : { code: 'upstream_revocation_failed', message: upstream.detail },
            duration_ms: null,
          });
        }
        records.push({
          ...base,
          occurred_at: at,
          kind: 'connected_account',
          action: 'connected_account.deleted',
          outcome: 'success',
          connected_account_id: account.id,
          upstream: null,
          error: null,
          duration_ms: null,
        });
      }
      const revokedMcpTokens =
        (await deps.mcpTokens.revokeAllFor(caller.tenantId, identifier)) +
        ((await deps.revokeOAuthGrants?.(caller.tenantId, identifier)) ?? 0);
      await deps.closeSessions(caller.tenantId, identifier);

      const settings = await deps.tenantSettings(caller.tenantId);
      records.push({
        ...base,
        occurred_at: started.toISOString(),
        kind: 'offboarding',
        action: 'identity.offboard',
        outcome: 'success',
        connected_account_id: null,
        upstream: null,
        error: null,
        duration_ms: clock.now().getTime() - started.getTime(),
      });
      await deps.audit.append(caller.tenantId, records, { retentionDays: settings.retentionDays });
      deps.logger.info(
        { identifier, accounts: revoked.length, mcp_tokens: revokedMcpTokens },
        'identity offboarded',
      );
      return { revokedConnectedAccounts: revoked, revokedMcpTokens };
    },
  };
}

export type OffboardingService = ReturnType<typeof createOffboardingService>;
