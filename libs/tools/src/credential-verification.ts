import { createHash } from 'node:crypto';
import { AuditJournal, SYSTEM_CALLER } from '@warden/audit';
import type { AuditStore } from '@warden/audit';
import type { Logger } from '@warden/core';
import { isWardenError } from '@warden/core';
import { credentialSecrets, verifyCredential } from '@warden/cloudflare';
import type { CloudflareCredential, VerifiedCredential } from '@warden/cloudflare';
import type { ConnectedAccount, ConnectedAccountService, CredentialVerifier } from '@warden/vault';
import { upstreamPrincipal } from './account-resolution.ts';
import type { TenantToolSettings } from './call-context.ts';
import type { UpstreamGateway } from './upstream-gateway.ts';

export interface VerificationDeps {
  readonly gateway: UpstreamGateway;
  readonly audit: AuditStore;
  readonly settings: (tenantId: string) => Promise<TenantToolSettings>;
}

/**
 * Before Cloudflare says whose a credential is, its requests count against the credential
 * itself (a digest of it, never the secret).
 */
function credentialPrincipal(credential: CloudflareCredential): string {
  const digest = createHash('sha256').update(credentialSecrets(credential).join('\n')).digest('hex');
  return `cf:credential:${digest.slice(0, 32)}`;
}

async function verifyThroughGateway(
  deps: VerificationDeps,
  credential: CloudflareCredential,
  context: {
    tenantId: string;
    subject: Parameters<UpstreamGateway['send']>[0]['subject'];
    principal: string;
  },
): Promise<VerifiedCredential> {
  const settings = await deps.settings(context.tenantId);
  const journal = new AuditJournal(deps.audit, context.tenantId, settings.retentionDays);
  const client = deps.gateway.clientFor(
    {
      tenantId: context.tenantId,
      subject: context.subject,
      credential,
      principal: context.principal,
      budget: settings.budget,
      policy: null,
    },
    journal,
    'cloudflare.verify',
  );
  let result: VerifiedCredential;
  try {
    result = await verifyCredential(client, credential);
  } catch (error) {
    await journal.flush();
    throw error;
  }
  await journal.flush();
  return result;
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
      principal: credentialPrincipal(credential),
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
