import { createHash, randomBytes } from 'node:crypto';
import Tokens from '@fastify/csrf';
import { randomString } from '@warden/core';
import type { Database } from '@warden/db';
import type { Kysely } from 'kysely';

/** A session ends this long after sign-in, whatever happens. */
export const SESSION_MAX_AGE_MS = 12 * 3_600_000;
/** …and this long after its last request. */
export const SESSION_IDLE_MS = 30 * 60_000;
/** `last_seen_at` is written at most this often per session (not on every request). */
const TOUCH_EVERY_MS = 60_000;

/** What a tenant session acts as: the API key it was signed in with, or the SSO admin's identifier. */
export interface ConsoleSessionPrincipal {
  readonly type: 'api_key' | 'sso';
  readonly id: string;
}

export type ConsoleSession =
  | {
      readonly id: string;
      readonly kind: 'tenant';
      readonly tenantId: string;
      readonly tenantName: string;
      readonly principal: ConsoleSessionPrincipal;
      readonly csrfSecret: string;
      readonly expiresAt: Date;
    }
  | {
      readonly id: string;
      readonly kind: 'operator';
      readonly csrfSecret: string;
      readonly expiresAt: Date;
    };

function sha256(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

/** The admin token as operator sessions remember it: changing the token ends them. */
export function adminFingerprint(adminToken: string): string {
  return sha256(`warden-console-operator:${adminToken}`);
}

/** Ends the console sessions an identity signed in to through the tenant's SSO (offboarding). */
export async function endSsoConsoleSessions(
  db: Kysely<Database>,
  tenantId: string,
  identifier: string,
): Promise<void> {
  await db
    .updateTable('console_sessions')
    .set({ revoked_at: new Date() })
    .where('tenant_id', '=', tenantId)
    .where('sso_identifier', '=', identifier)
    .where('revoked_at', 'is', null)
    .execute();
}

/**
 * Console sessions in PostgreSQL, so any replica serves any request and a sign-out, a revoked
 * API key or a changed SSO configuration ends the session everywhere at once. The browser's cookie holds a random
 * 256-bit secret; only its SHA-256 is stored. Anti-forgery tokens come from @fastify/csrf,
 * derived from a per-session secret that never leaves the server.
 */
export function createConsoleSessions(deps: { db: Kysely<Database>; now?: () => Date }) {
  const { db } = deps;
  const now = deps.now ?? (() => new Date());
  const csrf = Tokens();

  return {
    async create(input: {
      kind: 'tenant' | 'operator';
      tenantId: string | null;
      apiKeyId: string | null;
      /** A sign-in through the tenant's SSO: the identifier and the configuration it was made under. */
      sso?: { identifier: string; configUpdatedAt: Date };
      adminFingerprint: string | null;
      ip: string | null;
      userAgent: string | null;
    }): Promise<{ id: string; secret: string; expiresAt: Date }> {
      const secret = randomBytes(32).toString('base64url');
      const id = `cs_${randomString(20)}`;
      const expiresAt = new Date(now().getTime() + SESSION_MAX_AGE_MS);
      await db
        .insertInto('console_sessions')
        .values({
          id,
          secret_hash: sha256(secret),
          kind: input.kind,
          tenant_id: input.tenantId,
          api_key_id: input.apiKeyId,
          sso_identifier: input.sso?.identifier ?? null,
          sso_config_updated_at: input.sso?.configUpdatedAt ?? null,
          admin_fingerprint: input.adminFingerprint,
          csrf_secret: csrf.secretSync(),
          ip: input.ip,
          user_agent: input.userAgent?.slice(0, 300) ?? null,
          expires_at: expiresAt,
        })
        .execute();
      return { id, secret, expiresAt };
    },

    /**
     * The live session a cookie names, or null: unknown, signed out, expired, idle too long, or
     * signed in with something that no longer works (a revoked API key, a changed admin token,
     * an SSO configuration changed or removed since, or one that no longer names the identifier).
     */
    async resolve(secret: string, currentAdminFingerprint: string | null): Promise<ConsoleSession | null> {
      const at = now();
      const row = await db
        .selectFrom('console_sessions as s')
        .leftJoin('tenant_api_keys as k', 'k.id', 's.api_key_id')
        .leftJoin('tenants as t', 't.id', 's.tenant_id')
        .leftJoin('tenant_sso_configs as c', 'c.tenant_id', 's.tenant_id')
        .select([
          's.id',
          's.kind',
          's.tenant_id',
          's.api_key_id',
          's.admin_fingerprint',
          's.sso_identifier',
          's.sso_config_updated_at',
          'c.updated_at as sso_updated_at',
          'c.console_admins',
          's.csrf_secret',
          's.expires_at',
          's.last_seen_at',
          's.revoked_at',
          'k.revoked_at as key_revoked_at',
          'k.tenant_id as key_tenant_id',
          't.name as tenant_name',
        ])
        .where('s.secret_hash', '=', sha256(secret))
        .executeTakeFirst();
      if (!row || row.revoked_at || row.expires_at <= at) return null;
      if (at.getTime() - row.last_seen_at.getTime() > SESSION_IDLE_MS) return null;
      if (at.getTime() - row.last_seen_at.getTime() > TOUCH_EVERY_MS) {
        await db.updateTable('console_sessions').set({ last_seen_at: at }).where('id', '=', row.id).execute();
      }
      if (row.kind === 'operator') {
        if (!currentAdminFingerprint || row.admin_fingerprint !== currentAdminFingerprint) return null;
        return { id: row.id, kind: 'operator', csrfSecret: row.csrf_secret, expiresAt: row.expires_at };
      }
      if (!row.tenant_id) return null;
      let principal: ConsoleSessionPrincipal;
      if (row.sso_identifier !== null) {
        const stillAdmin =
          row.sso_updated_at !== null &&
          row.sso_config_updated_at !== null &&
          row.sso_updated_at.getTime() === row.sso_config_updated_at.getTime() &&
          (row.console_admins ?? []).includes(row.sso_identifier);
        if (!stillAdmin) return null;
        principal = { type: 'sso', id: row.sso_identifier };
      } else {
        if (!row.api_key_id || row.key_revoked_at !== null || row.key_tenant_id !== row.tenant_id)
          return null;
        principal = { type: 'api_key', id: row.api_key_id };
      }
      return {
        id: row.id,
        kind: 'tenant',
        tenantId: row.tenant_id,
        tenantName: row.tenant_name ?? row.tenant_id,
        principal,
        csrfSecret: row.csrf_secret,
        expiresAt: row.expires_at,
      };
    },

    async revoke(id: string): Promise<void> {
      await db
        .updateTable('console_sessions')
        .set({ revoked_at: now() })
        .where('id', '=', id)
        .where('revoked_at', 'is', null)
        .execute();
    },

    csrfToken(session: ConsoleSession): string {
      return csrf.create(session.csrfSecret);
    },

    verifyCsrf(session: ConsoleSession, token: string): boolean {
      return csrf.verify(session.csrfSecret, token);
    },
  };
}

export type ConsoleSessions = ReturnType<typeof createConsoleSessions>;
