import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '@warden/core';
import { WardenError, newId, notFound, systemClock } from '@warden/core';
import { lifecycleRecord } from '@warden/audit';
import type { Database, McpTokenRow } from '@warden/db';
import { decodeCursor, encodeCursor } from '@warden/db';
import { sql } from 'kysely';
import type { Expression, ExpressionBuilder, Kysely, SqlBool } from 'kysely';
import { validateIdentifier } from './connected-accounts.service.ts';
import type { ActorContext, LifecycleAudit } from './lifecycle.ts';

const TOKEN_PREFIX = 'wdn_mcp_';
export const MIN_MCP_TOKEN_SECONDS = 60;
export const MAX_MCP_TOKEN_SECONDS = 30 * 24 * 3600;

export interface McpToken {
  readonly id: string;
  readonly tenantId: string;
  readonly identifier: string;
  readonly connectionNames: readonly string[] | null;
  readonly audience: string;
  readonly expiresAt: Date;
  readonly createdAt: Date;
  readonly revokedAt: Date | null;
}

/** A token as listed to its tenant: everything but the secret (and its hash). */
export interface McpTokenListing extends McpToken {
  readonly lastUsedAt: Date | null;
  /** clientInfo of the last MCP initialize made with this token. */
  readonly clientName: string | null;
  readonly clientVersion: string | null;
}

export interface McpSession {
  readonly tokenId: string;
  /** clientInfo of the last MCP initialize made with this token. */
  readonly clientName: string | null;
  readonly clientVersion: string | null;
  readonly tenantId: string;
  readonly identifier: string;
  readonly connectionNames: readonly string[] | null;
  readonly expiresAt: Date;
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** `"3600s"`, `"90m"`, `"12h"`, `"7d"` or a number of seconds; 60 s to 30 days. */
export function parseExpiry(value: unknown, field = 'expiry'): number {
  let seconds: number | null = null;
  if (typeof value === 'number' && Number.isInteger(value)) seconds = value;
  else if (typeof value === 'string') {
    const match = /^(\d{1,9})([smhd])?$/.exec(value.trim());
    if (match) seconds = Number(match[1]) * (UNIT_SECONDS[match[2] ?? 's'] ?? 1);
  }
  if (seconds === null) {
    throw new WardenError('invalid_request', `${field}: must be a duration like "3600s", "12h" or "7d"`, {
      field,
    });
  }
  if (seconds < MIN_MCP_TOKEN_SECONDS || seconds > MAX_MCP_TOKEN_SECONDS) {
    throw new WardenError('invalid_request', `${field}: must be between 60s and 30d`, { field });
  }
  return seconds;
}

/**
 * An MCP client's self-description, as text PostgreSQL can store: it comes from the client
 * unchecked, and a NUL or a lone surrogate would fail the request that records it.
 */
function storableLabel(value: string, max: number): string {
  return value.slice(0, max).toWellFormed().replaceAll('\u0000', '\uFFFD');
}

function hash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

const MAX_PAGE_SIZE = 100;

function toToken(row: Omit<McpTokenRow, 'secret_hash'>): McpToken {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    identifier: row.identifier,
    connectionNames: row.connection_names,
    audience: row.audience,
    expiresAt: row.expires_at,
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
  };
}

export interface McpTokenService {
  create(input: {
    ctx: ActorContext;
    identifier: string;
    connectionNames: readonly string[] | null;
    expirySeconds: number;
    audience: string;
    createdBy: string | null;
  }): Promise<{ token: string; record: McpToken }>;
  /** The identifier's tokens, oldest first, live or not; never the secret. */
  list(
    tenantId: string,
    query: { identifier: string; pageSize?: number; pageToken?: string },
  ): Promise<{ items: McpTokenListing[]; nextPageToken: string | null }>;
  /**
   * Null for an unknown, revoked, expired or wrong-audience token. Checked on every request;
   * expiry against the database's clock, so every replica decides the same.
   */
  authenticate(token: string, audience: string): Promise<McpSession | null>;
  revoke(ctx: ActorContext, id: string): Promise<void>;
  /** Whether a token may still be used (not revoked, not expired by the database's clock). */
  isActive(tenantId: string, id: string): Promise<boolean>;
  /**
   * Drops remembered sessions of a revoked token (or of every token of an identity) from this
   * replica's authentication cache; the bus calls it for revocations made anywhere.
   */
  forget(revocation: { tenantId: string; tokenId?: string; identifier?: string }): void;
  /** Records the client that initialized a session with this token. */
  recordClient(tokenId: string, client: { name: string; version: string }): Promise<void>;
  /**
   * Revokes every live token of an identifier, and with `mintedBy` every live token that principal
   * minted for other identifiers (it was shown their secrets); returns how many.
   */
  revokeAllFor(ctx: ActorContext, identifier: string, options?: { mintedBy?: string }): Promise<number>;
  /**
   * Revokes every live token `mintedBy` minted for identifiers other than `own` (a console admin
   * taken off the list keeps their own tokens, not those they were shown for others).
   */
  revokeMintedBy(ctx: ActorContext, mintedBy: string, own: string): Promise<number>;
}

/** How `created_by` names a person signed in to the console through SSO (MCP tokens, sign-in links). */
export function ssoPrincipalRef(identifier: string): string {
  return `sso:${identifier}`;
}

export function createMcpTokenService(deps: {
  db: Kysely<Database>;
  clock?: Clock;
  /** Writes lifecycle records inside the change's transaction. */
  audit?: LifecycleAudit;
  /** Told after a token was revoked, so its live sessions and calls end on every replica. */
  onRevoked?: (revocation: { tenantId: string; tokenId: string }) => Promise<void> | void;
  /**
   * Remembers authenticated tokens for `ttlMs`, so an MCP request does not pay a database round
   * trip to authenticate, like tenant API keys: revocations reach it through `forget`, and
   * nothing cached before `trustedSince()` (null: nothing) is used.
   */
  cache?: {
    readonly ttlMs: number;
    readonly trustedSince: () => number | null;
    readonly maxEntries?: number;
  };
}): McpTokenService {
  const { db } = deps;
  const clock = deps.clock ?? systemClock;
  const audit = deps.audit ?? (async () => {});
  const cacheOptions = deps.cache && deps.cache.ttlMs > 0 ? deps.cache : null;
  /** By SHA-256 of the token, never the token. */
  const sessions = new Map<string, { session: McpSession; audience: string; cachedAt: number }>();

  function cachedSession(key: string, audience: string): McpSession | null {
    const entry = cacheOptions ? sessions.get(key) : undefined;
    if (!entry || !cacheOptions) return null;
    const since = cacheOptions.trustedSince();
    if (
      since === null ||
      entry.cachedAt < since ||
      entry.cachedAt <= Date.now() - cacheOptions.ttlMs ||
      entry.session.expiresAt <= clock.now()
    ) {
      sessions.delete(key);
      return null;
    }
    return entry.audience === audience ? entry.session : null;
  }
  const lastTouched = new Map<string, number>();

  /**
   * Revokes the live tokens `which` selects, each recorded under its own identifier (with who
   * minted it when that is not `identifier`'s own); the tokens of other identifiers are announced
   * one by one, so their live sessions and calls end on every replica (`identifier`'s own end with
   * the change that revoked them).
   */
  async function revokeLive(
    ctx: ActorContext,
    identifier: string,
    which: (eb: ExpressionBuilder<Database, 'mcp_tokens'>) => Expression<SqlBool>,
  ): Promise<number> {
    const { tenantId } = ctx;
    const rows = await db.transaction().execute(async (tx) => {
      const revoked = await tx
        .updateTable('mcp_tokens')
        .set({ revoked_at: clock.now() })
        .where('tenant_id', '=', tenantId)
        .where(which)
        .where('revoked_at', 'is', null)
        .where('expires_at', '>', sql<Date>`now()`)
        .returning(['id', 'identifier', 'created_by'])
        .execute();
      if (revoked.length > 0) {
        await audit(
          tx,
          tenantId,
          revoked.map((r) =>
            lifecycleRecord(
              { caller: ctx.actor, identifier: r.identifier },
              {
                action: 'mcp_token.revoked',
                details: {
                  mcp_token_id: r.id,
                  ...(r.identifier !== identifier ? { minted_by: r.created_by } : {}),
                },
              },
            ),
          ),
        );
      }
      return revoked;
    });
    for (const row of rows) {
      if (row.identifier !== identifier) await deps.onRevoked?.({ tenantId, tokenId: row.id });
    }
    return rows.length;
  }

  return {
    async create(input) {
      const id = newId('mcp');
      const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
      const { tenantId } = input.ctx;
      return db.transaction().execute(async (tx) => {
        // A token is minted only for an identity that can use it. The share lock makes a
        // concurrent offboarding wait for this insert (and then revoke the token with the rest),
        // or makes this check see the accounts it already revoked.
        let active = tx
          .selectFrom('connected_accounts as ca')
          .select('ca.id')
          .where('ca.tenant_id', '=', tenantId)
          .where('ca.identifier', '=', input.identifier)
          .where('ca.status', '=', 'ACTIVE');
        if (input.connectionNames) {
          active = active
            .innerJoin('connections as c', 'c.id', 'ca.connection_id')
            .where('c.name', 'in', [...input.connectionNames]);
        }
        const accounts = await active.forShare('ca').execute();
        if (accounts.length === 0) {
          throw new WardenError(
            'not_found',
            `identifier: '${input.identifier}' has no ACTIVE connected account${input.connectionNames ? ` on ${input.connectionNames.join(', ')}` : ''} (unknown, offboarded or revoked); connect one with POST /api/v1/connected_accounts first`,
            { field: 'identifier' },
          );
        }
        const row = await tx
          .insertInto('mcp_tokens')
          .values({
            id,
            tenant_id: tenantId,
            identifier: input.identifier,
            connection_names: input.connectionNames ? JSON.stringify(input.connectionNames) : null,
            secret_hash: hash(token),
            audience: input.audience,
            created_by: input.createdBy,
            // The database's clock, like the check in `authenticate`.
            expires_at: sql<Date>`now() + make_interval(secs => ${input.expirySeconds})`,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await audit(tx, tenantId, [
          lifecycleRecord(
            { caller: input.ctx.actor, identifier: input.identifier },
            {
              action: 'mcp_token.minted',
              details: {
                mcp_token_id: id,
                connection_names: input.connectionNames,
                expires_at: row.expires_at.toISOString(),
              },
            },
          ),
        ]);
        return { token, record: toToken(row) };
      });
    },
    async list(tenantId, query) {
      const identifier = validateIdentifier(query.identifier);
      const pageSize = query.pageSize ?? 20;
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
        throw new WardenError('invalid_request', `page_size: must be an integer from 1 to ${MAX_PAGE_SIZE}`, {
          field: 'page_size',
        });
      }
      // Every column but the secret's hash.
      let q = db
        .selectFrom('mcp_tokens')
        .select([
          'id',
          'tenant_id',
          'identifier',
          'connection_names',
          'audience',
          'created_by',
          'expires_at',
          'created_at',
          'revoked_at',
          'last_used_at',
          'client_name',
          'client_version',
        ])
        .where('tenant_id', '=', tenantId)
        .where('identifier', '=', identifier);
      if (query.pageToken !== undefined) {
        const after = decodeCursor(query.pageToken);
        q = q.where(({ eb, refTuple, tuple }) =>
          eb(refTuple('created_at', 'id'), '>', tuple(after.createdAt, after.id)),
        );
      }
      const rows = await q
        .orderBy('created_at')
        .orderBy('id')
        .limit(pageSize + 1)
        .execute();
      const items = rows.slice(0, pageSize).map((row): McpTokenListing => ({
        ...toToken(row),
        lastUsedAt: row.last_used_at,
        clientName: row.client_name,
        clientVersion: row.client_version,
      }));
      const last = items[items.length - 1];
      return {
        items,
        nextPageToken:
          rows.length > pageSize && last ? encodeCursor({ createdAt: last.createdAt, id: last.id }) : null,
      };
    },
    async authenticate(token, audience) {
      if (!token.startsWith(TOKEN_PREFIX) || token.length > 200) return null;
      const key = hash(token);
      const hit = cachedSession(key, audience);
      if (hit) return hit;
      // Taken before the read: a revocation landing while it runs is after this entry.
      const readAt = Date.now();
      const row = await db
        .selectFrom('mcp_tokens')
        .selectAll()
        .where('secret_hash', '=', hash(token))
        .where('expires_at', '>', sql<Date>`now()`)
        .executeTakeFirst();
      const now = clock.now();
      if (!row || row.revoked_at !== null || row.audience !== audience) return null;
      if ((lastTouched.get(row.id) ?? 0) < now.getTime() - 60_000) {
        lastTouched.set(row.id, now.getTime());
        await db.updateTable('mcp_tokens').set({ last_used_at: now }).where('id', '=', row.id).execute();
      }
      const session: McpSession = {
        tokenId: row.id,
        clientName: row.client_name,
        clientVersion: row.client_version,
        tenantId: row.tenant_id,
        identifier: row.identifier,
        connectionNames: row.connection_names,
        expiresAt: row.expires_at,
      };
      if (cacheOptions) {
        if (sessions.size >= (cacheOptions.maxEntries ?? 10_000)) {
          sessions.delete(sessions.keys().next().value as string);
        }
        sessions.set(key, { session, audience: row.audience, cachedAt: readAt });
      }
      return session;
    },
    forget(revocation) {
      for (const [key, entry] of sessions) {
        const s = entry.session;
        if (s.tenantId !== revocation.tenantId) continue;
        if (revocation.tokenId !== undefined && s.tokenId !== revocation.tokenId) continue;
        if (revocation.identifier !== undefined && s.identifier !== revocation.identifier) continue;
        sessions.delete(key);
      }
    },
    async revoke(ctx, id) {
      const { tenantId } = ctx;
      const result = await db.transaction().execute(async (tx) => {
        const row = await tx
          .updateTable('mcp_tokens')
          .set({ revoked_at: clock.now() })
          .where('tenant_id', '=', tenantId)
          .where('id', '=', id)
          .where('revoked_at', 'is', null)
          .returning('identifier')
          .executeTakeFirst();
        if (row) {
          await audit(tx, tenantId, [
            lifecycleRecord(
              { caller: ctx.actor, identifier: row.identifier },
              { action: 'mcp_token.revoked', details: { mcp_token_id: id } },
            ),
          ]);
        }
        return row;
      });
      // Published even when it was already revoked: a retry must still reach every replica.
      await deps.onRevoked?.({ tenantId, tokenId: id });
      if (!result) {
        const exists = await db
          .selectFrom('mcp_tokens')
          .select('id')
          .where('tenant_id', '=', tenantId)
          .where('id', '=', id)
          .executeTakeFirst();
        if (!exists) throw notFound('MCP token');
      }
    },
    async isActive(tenantId, id) {
      const row = await db
        .selectFrom('mcp_tokens')
        .select('id')
        .where('tenant_id', '=', tenantId)
        .where('id', '=', id)
        .where('revoked_at', 'is', null)
        .where('expires_at', '>', sql<Date>`now()`)
        .executeTakeFirst();
      return row !== undefined;
    },
    async recordClient(tokenId, client) {
      for (const [key, entry] of sessions) {
        if (entry.session.tokenId !== tokenId) continue;
        sessions.set(key, {
          ...entry,
          session: {
            ...entry.session,
            clientName: client.name.slice(0, 100),
            clientVersion: client.version.slice(0, 50),
          },
        });
      }
      await db
        .updateTable('mcp_tokens')
        .set({
          client_name: storableLabel(client.name, 100),
          client_version: storableLabel(client.version, 50),
        })
        .where('id', '=', tokenId)
        .execute();
    },
    revokeAllFor(ctx, identifier, options = {}) {
      const { mintedBy } = options;
      return revokeLive(ctx, identifier, (eb) =>
        mintedBy === undefined
          ? eb('identifier', '=', identifier)
          : eb.or([eb('identifier', '=', identifier), eb('created_by', '=', mintedBy)]),
      );
    },
    revokeMintedBy(ctx, mintedBy, own) {
      return revokeLive(ctx, own, (eb) =>
        eb.and([eb('created_by', '=', mintedBy), eb('identifier', '!=', own)]),
      );
    },
  };
}
