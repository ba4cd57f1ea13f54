import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '@warden/core';
import { WardenError, hasControlCharacters, newId, notFound, systemClock } from '@warden/core';
import type { AuditCaller } from '@warden/audit';
import { lifecycleRecord } from '@warden/audit';
import { withConflictRetry } from '@warden/db';
import type { Database, Tenant, TenantSettings } from '@warden/db';
import type { Kysely } from 'kysely';
import type { ActorContext, LifecycleAudit } from './lifecycle.ts';

export const DEFAULT_CONNECTION_NAME = 'cloudflare';
const API_KEY_PREFIX = 'wdn_sk_';

export interface TenantView {
  readonly id: string;
  readonly name: string;
  readonly settings: TenantSettings;
  readonly createdAt: Date;
}

export interface IssuedApiKey {
  readonly id: string;
  /** Shown once; only its SHA-256 is stored. */
  readonly key: string;
}

export interface ApiKeyView {
  readonly id: string;
  readonly createdAt: Date;
  readonly revokedAt: Date | null;
  readonly lastUsedAt: Date | null;
}

export interface TenantCaller {
  readonly tenantId: string;
  readonly apiKeyId: string;
}

function hashSecret(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

function toView(row: Tenant): TenantView {
  return { id: row.id, name: row.name, settings: row.settings, createdAt: row.created_at };
}

export function validateTenantName(name: unknown): string {
  if (typeof name !== 'string' || name.trim() === '') {
    throw new WardenError('invalid_request', 'name: is required; give the tenant a non-empty name', {
      field: 'name',
    });
  }
  const trimmed = name.trim();
  if (trimmed.length > 200 || hasControlCharacters(trimmed)) {
    throw new WardenError('invalid_request', 'name: must be at most 200 printable characters', {
      field: 'name',
    });
  }
  return trimmed;
}

export interface TenantService {
  create(actor: AuditCaller, name: string): Promise<{ tenant: TenantView; apiKey: IssuedApiKey }>;
  get(tenantId: string): Promise<TenantView>;
  list(): Promise<TenantView[]>;
  issueApiKey(ctx: ActorContext): Promise<IssuedApiKey>;
  /** A tenant's API keys, newest first (ids and dates; the secret is never stored). */
  listApiKeys(tenantId: string): Promise<ApiKeyView[]>;
  revokeApiKey(ctx: ActorContext, keyId: string): Promise<void>;
  /** Resolves a presented API key to its tenant, or null for an unknown or revoked key. */
  authenticate(presented: string): Promise<TenantCaller | null>;
  /** Drops a key from this replica's authentication cache (another replica revoked it). */
  forgetApiKey(keyId: string): void;
  /**
   * The one way tenant settings change: the row is locked, `change` computes the new settings
   * from the current ones (it may throw to refuse), and the change is written with its audit
   * record (`before` → `after` of the keys it touched) in the same transaction.
   */
  updateSettings(
    ctx: ActorContext,
    action: string,
    change: (current: TenantSettings) => TenantSettings,
  ): Promise<{ before: TenantSettings; after: TenantSettings }>;
}

/**
 * Remembers recently authenticated API keys, so a tool call does not pay a database round
 * trip to authenticate. Revocation reaches it at once: locally, and from other replicas
 * through `forgetApiKey`; entries older than `trustedSince()` (null: nothing is trusted,
 * e.g. while revocations from other replicas might be missed) are ignored, and none lives
 * longer than `ttlMs`. Only successful authentications are cached.
 */
export interface ApiKeyCacheOptions {
  readonly ttlMs: number;
  readonly maxEntries?: number;
  readonly trustedSince: () => number | null;
  /** Called after a key is revoked here, to tell the other replicas (and end its running calls). */
  readonly onRevoked?: (keyId: string, tenantId: string) => void;
}

interface CachedKey {
  readonly caller: TenantCaller;
  readonly cachedAt: number;
}

export function createTenantService(deps: {
  db: Kysely<Database>;
  clock?: Clock;
  apiKeyCache?: ApiKeyCacheOptions;
  /** Writes lifecycle records inside the change's transaction. */
  audit?: LifecycleAudit;
  /** Told after settings changed, so cached contexts on every replica are dropped. */
  onSettingsChanged?: (tenantId: string) => Promise<void> | void;
}): TenantService {
  const { db } = deps;
  const audit = deps.audit ?? (async () => {});
  const clock = deps.clock ?? systemClock;
  const cacheOptions = deps.apiKeyCache && deps.apiKeyCache.ttlMs > 0 ? deps.apiKeyCache : null;
  const maxCached = cacheOptions?.maxEntries ?? 10_000;
  /** By SHA-256 of the key; never the key itself. */
  const cache = new Map<string, CachedKey>();

  function cached(hash: string): TenantCaller | null {
    const entry = cacheOptions ? cache.get(hash) : undefined;
    if (!entry || !cacheOptions) return null;
    const since = cacheOptions.trustedSince();
    if (since === null || entry.cachedAt < since || entry.cachedAt <= Date.now() - cacheOptions.ttlMs) {
      cache.delete(hash);
      return null;
    }
    return entry.caller;
  }

  /** Keys revoked lately, by when: an authentication whose read began before that must not be cached. */
  const revokedAt = new Map<string, number>();

  function forget(keyId: string): void {
    if (!cacheOptions) return;
    const now = Date.now();
    for (const [id, at] of revokedAt) if (at <= now - cacheOptions.ttlMs) revokedAt.delete(id);
    revokedAt.set(keyId, now);
    for (const [hash, entry] of cache) if (entry.caller.apiKeyId === keyId) cache.delete(hash);
  }

  function revokedSince(keyId: string, time: number): boolean {
    return (revokedAt.get(keyId) ?? -Infinity) >= time;
  }
  // last_used_at is a hint for operators, not an audit record: write it at most once a minute per key.
  const lastTouched = new Map<string, number>();

  async function insertKey(executor: Kysely<Database>, tenantId: string): Promise<IssuedApiKey> {
    const id = newId('key');
    const key = `${API_KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
    await executor
      .insertInto('tenant_api_keys')
      .values({ id, tenant_id: tenantId, secret_hash: hashSecret(key) })
      .execute();
    return { id, key };
  }

  async function get(tenantId: string): Promise<TenantView> {
    const row = await db.selectFrom('tenants').selectAll().where('id', '=', tenantId).executeTakeFirst();
    if (!row) throw notFound('tenant');
    return toView(row);
  }

  /** The settings keys whose value differs, with their old and new values. */
  function changedKeys(before: TenantSettings, after: TenantSettings) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].filter(
      (k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]),
    );
    return {
      before: Object.fromEntries(keys.map((k) => [k, before[k] ?? null])),
      after: Object.fromEntries(keys.map((k) => [k, after[k] ?? null])),
    };
  }

  return {
    async create(actor, name) {
      const validName = validateTenantName(name);
      return db.transaction().execute(async (tx) => {
        const id = newId('ten');
        const row = await tx
          .insertInto('tenants')
          .values({ id, name: validName, settings: '{}' })
          .returningAll()
          .executeTakeFirstOrThrow();
        await tx
          .insertInto('connections')
          .values({ id: newId('con'), tenant_id: id, name: DEFAULT_CONNECTION_NAME, provider: 'cloudflare' })
          .execute();
        const apiKey = await insertKey(tx, id);
        await audit(tx, id, [
          lifecycleRecord(
            { caller: actor },
            { action: 'tenant.created', details: { tenant_id: id, name: validName } },
          ),
          lifecycleRecord(
            { caller: actor },
            { action: 'api_key.issued', details: { api_key_id: apiKey.id } },
          ),
        ]);
        return { tenant: toView(row), apiKey };
      });
    },
    get,
    async list() {
      const rows = await db.selectFrom('tenants').selectAll().orderBy('created_at').orderBy('id').execute();
      return rows.map(toView);
    },
    async listApiKeys(tenantId) {
      await get(tenantId);
      const rows = await db
        .selectFrom('tenant_api_keys')
        .select(['id', 'created_at', 'revoked_at', 'last_used_at'])
        .where('tenant_id', '=', tenantId)
        .orderBy('created_at', 'desc')
        .orderBy('id')
        .execute();
      return rows.map((r) => ({
        id: r.id,
        createdAt: r.created_at,
        revokedAt: r.revoked_at,
        lastUsedAt: r.last_used_at,
      }));
    },
    async issueApiKey(ctx) {
      await get(ctx.tenantId);
      return db.transaction().execute(async (tx) => {
        const issued = await insertKey(tx, ctx.tenantId);
        await audit(tx, ctx.tenantId, [
          lifecycleRecord(
            { caller: ctx.actor },
            { action: 'api_key.issued', details: { api_key_id: issued.id } },
          ),
        ]);
        return issued;
      });
    },
    async revokeApiKey(ctx, keyId) {
      const { tenantId } = ctx;
      const result = await db.transaction().execute(async (tx) => {
        const updated = await tx
          .updateTable('tenant_api_keys')
          .set({ revoked_at: clock.now() })
          .where('tenant_id', '=', tenantId)
          .where('id', '=', keyId)
          .where('revoked_at', 'is', null)
          .executeTakeFirst();
        if (updated.numUpdatedRows > 0n) {
          await audit(tx, tenantId, [
            lifecycleRecord(
              { caller: ctx.actor },
              { action: 'api_key.revoked', details: { api_key_id: keyId } },
            ),
          ]);
        }
        return updated;
      });
      forget(keyId);
      if (result.numUpdatedRows > 0n) cacheOptions?.onRevoked?.(keyId, tenantId);
      if (result.numUpdatedRows === 0n) {
        const exists = await db
          .selectFrom('tenant_api_keys')
          .select('id')
          .where('tenant_id', '=', tenantId)
          .where('id', '=', keyId)
          .executeTakeFirst();
        if (!exists) throw notFound('api key');
      }
    },
    forgetApiKey: forget,
    async authenticate(presented) {
      if (!presented.startsWith(API_KEY_PREFIX) || presented.length > 200) return null;
      const hash = hashSecret(presented);
      const hit = cached(hash);
      if (hit) return hit;
      // Taken before the read: a revocation landing while it runs makes the entry stale.
      const readAt = Date.now();
      const row = await db
        .selectFrom('tenant_api_keys')
        .select(['id', 'tenant_id', 'secret_hash', 'revoked_at'])
        .where('secret_hash', '=', hash)
        .executeTakeFirst();
      if (!row || row.revoked_at !== null) return null;
      if (!timingSafeEqual(Buffer.from(row.secret_hash, 'hex'), Buffer.from(hash, 'hex'))) return null;
      const now = clock.now().getTime();
      if ((lastTouched.get(row.id) ?? 0) < now - 60_000) {
        lastTouched.set(row.id, now);
        await db
          .updateTable('tenant_api_keys')
          .set({ last_used_at: new Date(now) })
          .where('id', '=', row.id)
          .execute();
      }
      const caller = { tenantId: row.tenant_id, apiKeyId: row.id };
      if (cacheOptions && !revokedSince(row.id, readAt)) {
        if (cache.size >= maxCached) cache.delete(cache.keys().next().value as string);
        cache.set(hash, { caller, cachedAt: readAt });
      }
      return caller;
    },
    async updateSettings(ctx, action, change) {
      // A concurrent audit maintenance pass can abort this transaction (see withConflictRetry).
      const result = await withConflictRetry(() =>
        db.transaction().execute(async (tx) => {
          const row = await tx
            .selectFrom('tenants')
            .select('settings')
            .where('id', '=', ctx.tenantId)
            .forUpdate()
            .executeTakeFirst();
          if (!row) throw notFound('tenant');
          const before = row.settings;
          const after = change(before);
          const diff = changedKeys(before, after);
          if (Object.keys(diff.after).length === 0) return { before, after, changed: false };
          await tx
            .updateTable('tenants')
            .set({ settings: JSON.stringify(after), updated_at: clock.now() })
            .where('id', '=', ctx.tenantId)
            .execute();
          await audit(tx, ctx.tenantId, [lifecycleRecord({ caller: ctx.actor }, { action, details: diff })]);
          return { before, after, changed: true };
        }),
      );
      if (result.changed) await deps.onSettingsChanged?.(ctx.tenantId);
      return { before: result.before, after: result.after };
    },
  };
}
