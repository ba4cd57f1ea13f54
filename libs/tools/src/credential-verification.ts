import { AuditJournal, SYSTEM_CALLER } from '@warden/audit';
import type { AuditStore } from '@warden/audit';
import type { Logger } from '@warden/core';
import { isWardenError } from '@warden/core';
import { verifyCredential } from '@warden/cloudflare';
import type { CloudflareClient, CloudflareCredential, VerifiedCredential } from '@warden/cloudflare';
import { blockSecondsOf, cloudflarePrincipal } from '@warden/ratelimit';
import type { Admitted, UpstreamAnswer, UpstreamBudget } from '@warden/ratelimit';
import type { ConnectedAccount, ConnectedAccountService, CredentialVerifier } from '@warden/vault';
import { upstreamPrincipal } from './account-resolution.ts';
import type { TenantToolSettings } from './call-context.ts';
import type { UpstreamGateway } from './upstream-gateway.ts';

export interface VerificationDeps {
  readonly gateway: UpstreamGateway;
  /** Charges verification's requests to the principal it finds (they were admitted without one). */
  readonly budget: Pick<UpstreamBudget, 'observe'>;
  readonly audit: AuditStore;
  readonly settings: (tenantId: string) => Promise<TenantToolSettings>;
}

async function verifyThroughGateway(
  deps: VerificationDeps,
  credential: CloudflareCredential,
  context: {
    tenantId: string;
    subject: Parameters<UpstreamGateway['send']>[0]['subject'];
    /** Known when re-verifying a stored account; null for a new credential. */
    principal: string | null;
  },
): Promise<VerifiedCredential> {
  const settings = await deps.settings(context.tenantId);
  const journal = new AuditJournal(deps.audit, context.tenantId, settings.retentionDays);
  // A new credential's requests are admitted before Cloudflare has said whose it is (only the
  // egress budget applies then) and charged to its user or account once it has.
  const uncharged: Array<{ admission: Admitted; answer: UpstreamAnswer | null }> = [];
  const client = deps.gateway.clientFor(
    {
      tenantId: context.tenantId,
      subject: context.subject,
      credential,
      principal: context.principal,
      deferCharge: (admission, answer) => uncharged.push({ admission, answer }),
      budget: settings.budget,
      policy: null,
    },
    journal,
    'cloudflare.verify',
  );
  // A 429 names the wait the budget blocks the user for (cloudflare-limits.ts owns the rule:
  // Cloudflare's Retry-After, else five minutes for its API-wide limit, else a second). The
  // user Cloudflare named on the way (GET /user) is whom a 429 after it blocks, even though the
  // verification then fails.
  let namedUser: string | null = null;
  const named: CloudflareClient = {
    ...client,
    send: async (sentWith, request) => {
      const response = await client.send(sentWith, request);
      if (request.method === 'GET' && request.path === '/user' && response.success) {
        const id = (response.result as { id?: unknown } | null)?.id;
        if (typeof id === 'string' && id !== '') namedUser = id;
      }
      return response.status === 429
        ? { ...response, retryAfterSeconds: blockSecondsOf(response) }
        : response;
    },
  };
  let result: VerifiedCredential | null = null;
  try {
    result = await verifyCredential(named, credential);
    return result;
  } finally {
    const learnt =
      result ??
      (namedUser ? { tokenKind: 'user' as const, userId: namedUser, tokenId: null, accounts: [] } : null);
    const principal = learnt ? cloudflarePrincipal(learnt) : null;
    for (const { admission, answer } of uncharged) {
      await deps.budget.observe(admission, answer, principal ? { principal } : {});
    }
    await journal.flush();
  }
}

/**
 * Verification of a credential on connect and rotation: its requests go through the upstream
 * gateway like any other (rate budget, write-ahead audit, scrubbed answers), attributed to the
 * caller who connects it.
 */
export function createCredentialVerifier(deps: VerificationDeps): CredentialVerifier {
  return (credential, context) =>
    verifyThroughGateway(deps, credential, {
      tenantId: context.tenantId,
      subject: {
        caller: context.actor,
        identifier: context.identifier,
        connectedAccountId: context.connectedAccountId,
      },
      principal: null,
    });
}

/**
 * Re-verifies a credential Cloudflare answered 401 to (at most once a minute per account) and
 * marks the account INVALID if Cloudflare no longer accepts it: an endpoint a token may not use
 * also answers 401, so one 401 alone proves nothing.
 */
export function createReverifier(
  deps: VerificationDeps & {
    readonly accounts: Pick<ConnectedAccountService, 'setStatus'>;
    readonly logger: Logger;
  },
) {
  const recent = new Map<string, number>();
  return (tenantId: string, account: ConnectedAccount, credential: CloudflareCredential): void => {
    const now = Date.now();
    if ((recent.get(account.id) ?? 0) > now - 60_000) return;
    recent.set(account.id, now);
    for (const [id, at] of recent) if (at <= now - 60_000) recent.delete(id);
    verifyThroughGateway(deps, credential, {
      tenantId,
      subject: { caller: SYSTEM_CALLER, identifier: account.identifier, connectedAccountId: account.id },
      principal: upstreamPrincipal(account),
    })
      .then(() => undefined)
      .catch(async (error: unknown) => {
        if (isWardenError(error) && error.code === 'invalid_credential') {
          await deps.accounts.setStatus({ tenantId, actor: SYSTEM_CALLER }, account.id, 'INVALID');
          deps.logger.warn(
            { connected_account_id: account.id, reason: error.message },
            'credential no longer valid; account marked INVALID',
          );
        }
      })
      .catch((err: unknown) => deps.logger.warn({ err }, 'credential re-verification failed'));
  };
}
