import { randomBytes } from 'node:crypto';
import { WardenError } from '@warden/core';
import type { Database } from '@warden/db';
import type { Kysely } from 'kysely';
import { accountIdFor, createRecordStore } from './oauth-artifacts.ts';

const LINK_PREFIX = 'wdn_login_';

interface LoginLinkRecord {
  readonly tenantId: string;
  readonly identifier: string;
  /** Tenant API key that asked for it. */
  readonly createdBy: string | null;
}

/**
 * One-time, short-lived sign-in links: a tenant's backend that knows who its engineer is
 * (SaaS tenants without an OIDC provider) vouches for an identifier. Stored as SHA-256 only.
 */
export function createLoginLinks(deps: { db: Kysely<Database>; publicUrl: string; ttlSeconds: number }) {
  const store = createRecordStore<LoginLinkRecord>(deps.db, 'LoginLink');
  const usable = (token: string) => token.startsWith(LINK_PREFIX) && token.length < 200;

  return {
    async create(input: LoginLinkRecord): Promise<{ token: string; url: string; expiresAt: Date }> {
      // A link signs an engineer in to use Cloudflare through Warden: like minting a token, it is
      // refused for an identifier with nothing to use (unknown, offboarded or revoked).
      const active = await deps.db
        .selectFrom('connected_accounts')
        .select('id')
        .where('tenant_id', '=', input.tenantId)
        .where('identifier', '=', input.identifier)
        .where('status', '=', 'ACTIVE')
        .executeTakeFirst();
      if (!active) {
        throw new WardenError(
          'not_found',
          `identifier: '${input.identifier}' has no ACTIVE connected account (unknown, offboarded or revoked); connect one with POST /api/v1/connected_accounts first`,
          { field: 'identifier' },
        );
      }
      const token = `${LINK_PREFIX}${randomBytes(32).toString('base64url')}`;
      await store.put(
        token,
        { ...input, accountId: accountIdFor(input.tenantId, input.identifier) },
        deps.ttlSeconds,
      );
      return {
        token,
        url: `${deps.publicUrl}/oauth/link?token=${token}`,
        expiresAt: new Date(Date.now() + deps.ttlSeconds * 1000),
      };
    },
    /** The link's identity if it can still be used, without using it. */
    async peek(token: string): Promise<LoginLinkRecord | null> {
      return usable(token) ? store.peek(token) : null;
    },
    /** Uses the link up; null when unknown, expired or used before. */
    async take(token: string): Promise<LoginLinkRecord | null> {
      return usable(token) ? store.take(token) : null;
    },
  };
}

export type LoginLinks = ReturnType<typeof createLoginLinks>;
