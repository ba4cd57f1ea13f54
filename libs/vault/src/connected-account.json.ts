import type { ConnectedAccount } from './connected-accounts.service.ts';

/** The wire form of a connected account (API.md), shared by the API and tenant webhooks. Never the credential. */
export function connectedAccountJson(a: ConnectedAccount) {
  return {
    id: a.id,
    identifier: a.identifier,
    connection_name: a.connectionName,
    status: a.status,
    authorization_type: a.authorizationType,
    token_kind: a.tokenKind,
    cloudflare: {
      user_id: a.cloudflare.userId,
      account_ids: a.cloudflare.accounts.map((x) => x.id),
      accounts: a.cloudflare.accounts.map((x) => ({ id: x.id, name: x.name })),
      token_id: a.cloudflare.tokenId,
      token_status: a.cloudflare.tokenStatus,
      expires_on: a.cloudflare.expiresOn?.toISOString() ?? null,
    },
    r2_access_key: a.r2AccessKey
      ? { access_key_id: a.r2AccessKey.accessKeyId, created_at: a.r2AccessKey.createdAt.toISOString() }
      : null,
    created_at: a.createdAt.toISOString(),
    updated_at: a.updatedAt.toISOString(),
    last_used_at: a.lastUsedAt?.toISOString() ?? null,
  };
}
