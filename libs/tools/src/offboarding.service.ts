import { AuditJournal, lifecycleRecord } from '@warden/audit';
import type { AuditStore } from '@warden/audit';
import type { Clock, Logger } from '@warden/core';
import { isWardenError, systemClock } from '@warden/core';
import type { CloudflareCredential } from '@warden/cloudflare';
import type { ActorContext, ConnectedAccount, ConnectedAccountService, McpTokenService } from '@warden/vault';
import { ssoPrincipalRef, validateIdentifier } from '@warden/vault';
import { upstreamPrincipal } from './account-resolution.ts';
import type { TenantToolSettings } from './call-context.ts';
import { revokeMintedCredentials } from './minted-credentials.ts';
import type { MintedCredentialStore, MintedRevocation } from './minted-credentials.ts';
import type { UpstreamGateway, UpstreamParty } from './upstream-gateway.ts';

/** How often offboarding looks whether an account's requests have ended. */
const SETTLE_POLL_MS = 100;

export interface UpstreamRevocation {
  readonly revoked: boolean;
  readonly detail: string;
}

export interface OffboardingResult {
  readonly revokedConnectedAccounts: ReadonlyArray<{
    readonly id: string;
    readonly upstream?: UpstreamRevocation;
  }>;
  readonly revokedMcpTokens: number;
}

/**
 * Cuts an identity off in one step: every connected account revoked (credentials deleted),
 * every MCP token and OAuth grant revoked, live MCP sessions and running calls ended on every replica (the
 * services publish each revocation), and optionally the Cloudflare API tokens themselves
 * deleted where the token is allowed to. Those deletions go through the upstream gateway like
 * any request: rate budget, write-ahead audit, scrubbed responses.
 */
export function createOffboardingService(deps: {
  accounts: Pick<
    ConnectedAccountService,
    'list' | 'openCredential' | 'revoke' | 'openRetained' | 'purgeCredential'
  >;
  mcpTokens: Pick<McpTokenService, 'revokeAllFor'>;
  gateway: UpstreamGateway;
  audit: AuditStore;
  tenantSettings: (tenantId: string) => Promise<TenantToolSettings>;
  /** Ends the identity's live sessions on every replica (MCP connections, SSO console sign-ins). */
  closeSessions: (tenantId: string, identifier: string) => Promise<void>;
  /** Credentials the identity's agents created through Warden, revoked with `revokeUpstream`. */
  mintedCredentials: MintedCredentialStore;
  /** Revokes the identity's OAuth grants from MCP sign-in (with their tokens); returns how many. */
  revokeOAuthGrants?: (tenantId: string, identifier: string) => Promise<number>;
  /**
   * Takes the identity off the tenant's console admins (SSO console sign-in), so it cannot sign
   * straight back in; whether it was one.
   */
  revokeConsoleAdmin?: (tenantId: string, identifier: string) => Promise<boolean>;
  /**
   * Requests with an account's credential still in flight on any replica (see
   * `AuditMaintenance.inFlight`), and how long to wait for them at most (the upstream timeout
   * and a margin): what they make is then recorded, or revoked at once, before offboarding
   * revokes the account's creations and deletes its token.
   */
  inFlight?: {
    readonly count: (tenantId: string, connectedAccountId: string, since: Date) => Promise<number>;
    readonly waitMs: number;
  };
  logger: Logger;
  clock?: Clock;
}) {
  const clock = deps.clock ?? systemClock;

  /** Waits until no request of the account is in flight (or `waitMs`); whether none is. */
  async function settled(tenantId: string, connectedAccountId: string, revokedAt: number): Promise<boolean> {
    if (!deps.inFlight) return true;
    const since = new Date(revokedAt - deps.inFlight.waitMs - 60_000);
    const deadline = revokedAt + deps.inFlight.waitMs;
    // Two clear looks a moment apart: a replica that had not yet heard of the revocation may
    // have started a request just before the first.
    let clear = 0;
    while (clear < 2) {
      const pending = await deps.inFlight.count(tenantId, connectedAccountId, since);
      clear = pending === 0 ? clear + 1 : 0;
      if (clear === 2) break;
      if (clock.now().getTime() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
    }
    return true;
  }

  /** Warden's own requests with the account's credential: budgeted and audited, no tenant policy. */
  function partyOf(
    ctx: ActorContext,
    account: ConnectedAccount,
    credential: CloudflareCredential,
    settings: TenantToolSettings,
  ): UpstreamParty {
    return {
      tenantId: ctx.tenantId,
      subject: { caller: ctx.actor, identifier: account.identifier, connectedAccountId: account.id },
      credential,
      principal: upstreamPrincipal(account),
      budget: settings.budget,
      // The tenant's policy governs agents, not offboarding.
      policy: null,
    };
  }

  async function revokeUpstream(
    party: UpstreamParty,
    account: ConnectedAccount,
    credential: CloudflareCredential,
    journal: AuditJournal,
  ): Promise<UpstreamRevocation> {
    if (credential.type === 'global_api_key') {
      return {
        revoked: false,
        detail: 'a Global API Key cannot be deleted through the API; change it in the Cloudflare dashboard',
      };
    }
    const tokenId = account.cloudflare.tokenId;
    if (!tokenId) return { revoked: false, detail: 'the token id is unknown' };
    const path =
      account.tokenKind === 'account'
        ? `/accounts/${encodeURIComponent(account.cloudflare.accounts[0]?.id ?? '')}/tokens/${encodeURIComponent(tokenId)}`
        : `/user/tokens/${encodeURIComponent(tokenId)}`;
    try {
      const response = await deps.gateway.send(
        party,
        { method: 'DELETE', path, action: 'cloudflare.token_delete' },
        journal,
      );
      if (response.success) return { revoked: true, detail: `Cloudflare deleted token ${tokenId}` };
      const reason = response.errors.map((e) => e.message).join('; ') || `HTTP ${response.status}`;
      return {
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
      ctx: ActorContext,
      identifierInput: string,
      options: { revokeUpstream: boolean },
    ): Promise<OffboardingResult> {
      const identifier = validateIdentifier(identifierInput);
      const started = clock.now().getTime();
      const settings = await deps.tenantSettings(ctx.tenantId);
      const journal = new AuditJournal(deps.audit, ctx.tenantId, settings.retentionDays);
      const live: ConnectedAccount[] = [];
      let pageToken: string | undefined;
      do {
        const page = await deps.accounts.list(ctx.tenantId, {
          identifier,
          pageSize: 100,
          ...(pageToken ? { pageToken } : {}),
        });
        live.push(...page.items);
        pageToken = page.nextPageToken ?? undefined;
      } while (pageToken);

      const revoked: Array<{ id: string; upstream?: UpstreamRevocation }> = [];
      for (const account of live) {
        let upstream: UpstreamRevocation | undefined;
        let credential: CloudflareCredential | null = null;
        if (account.status === 'REVOKED') {
          // Revoked already: an offboarding that stopped half-way left its credential sealed.
          credential = await deps.accounts.openRetained(ctx.tenantId, account.id);
          if (!credential) continue;
          if (!options.revokeUpstream) {
            // Only an offboarding that revokes upstream can finish it: the credential stays.
            revoked.push({
              id: account.id,
              upstream: {
                revoked: false,
                detail:
                  'an earlier offboarding stopped before revoking what this account made at Cloudflare; offboard again with revoke_upstream: true to finish it',
              },
            });
            continue;
          }
        } else if (options.revokeUpstream) {
          try {
            ({ credential } = await deps.accounts.openCredential(ctx.tenantId, account.id));
          } catch (error) {
            upstream = {
              revoked: false,
              detail: isWardenError(error) ? error.message : 'the credential could not be opened',
            };
          }
        }
        const revoking = options.revokeUpstream && credential !== null;
        // First the account: its running calls end on every replica and send nothing more, and a
        // credential one of them makes from now on is revoked as it is recorded (see
        // `guardCredentialResponse`). Writes its own `connected_account.deleted` record; the
        // credential stays sealed until what it made is revoked, so a second offboarding can
        // finish the job if this one stops half-way.
        const revokedAt = clock.now().getTime();
        await deps.accounts.revoke(ctx, account.id, { keepCredential: revoking });
        if (revoking && credential) {
          const quiet = await settled(ctx.tenantId, account.id, revokedAt);
          const party = partyOf(ctx, account, credential, settings);
          // What the account created goes first: deleting its own token ends its power to.
          const minted: MintedRevocation[] = await revokeMintedCredentials(
            {
              store: deps.mintedCredentials,
              cloudflare: deps.gateway.clientFor(party, journal, 'cloudflare.minted_credential_delete'),
            },
            ctx.tenantId,
            account.id,
            credential,
          );
          const late = quiet
            ? ''
            : '; requests it had in flight did not end in time: what they make is revoked as it is recorded, while the token lives';
          const unrevoked = minted.filter((m) => !m.revoked).length;
          if (unrevoked > 0) {
            // Its own token and sealed credential are what can still revoke them: both are kept
            // (the account stays revoked), and the next offboarding with revoke_upstream resumes.
            revoked.push({
              id: account.id,
              upstream: {
                revoked: false,
                detail: `credentials it created through Warden: ${minted.length - unrevoked} of ${minted.length} revoked (Cloudflare's answers are on the audit trail); its token and sealed credential are kept until the others are: offboard again with revoke_upstream: true to finish it${late}`,
              },
            });
            continue;
          }
          const own = await revokeUpstream(party, account, credential, journal);
          const summary =
            minted.length > 0
              ? `; credentials it created through Warden: ${minted.length} of ${minted.length} revoked`
              : '';
          upstream = { revoked: own.revoked, detail: `${own.detail}${summary}${late}` };
        }
        if (credential) await deps.accounts.purgeCredential(ctx.tenantId, account.id);
        revoked.push({ id: account.id, ...(upstream ? { upstream } : {}) });
      }
      // A person who signed in to the console through SSO saw the tokens they minted for others.
      const revokedMcpTokens =
        (await deps.mcpTokens.revokeAllFor(ctx, identifier, { mintedBy: ssoPrincipalRef(identifier) })) +
        ((await deps.revokeOAuthGrants?.(ctx.tenantId, identifier)) ?? 0);
      const consoleAdminRevoked = (await deps.revokeConsoleAdmin?.(ctx.tenantId, identifier)) ?? false;
      await deps.closeSessions(ctx.tenantId, identifier);

      await journal.flush([
        lifecycleRecord(
          { caller: ctx.actor, identifier },
          {
            kind: 'offboarding',
            action: 'identity.offboard',
            durationMs: clock.now().getTime() - started,
            details: {
              connected_accounts: revoked.map((r) => ({
                id: r.id,
                ...(r.upstream ? { upstream_revoked: r.upstream.revoked, detail: r.upstream.detail } : {}),
              })),
              mcp_tokens_revoked: revokedMcpTokens,
              console_admin_revoked: consoleAdminRevoked,
              revoke_upstream: options.revokeUpstream,
            },
          },
        ),
      ]);
      deps.logger.info(
        { identifier, accounts: revoked.length, mcp_tokens: revokedMcpTokens },
        'identity offboarded',
      );
      return { revokedConnectedAccounts: revoked, revokedMcpTokens };
    },
  };
}

export type OffboardingService = ReturnType<typeof createOffboardingService>;
