import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '@warden/core';
import { WardenError, hasControlCharacters, newId, notFound, systemClock } from '@warden/core';
import type { Database, Tenant, TenantSettings } from '@warden/db';
import type { Kysely } from 'kysely';

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
  create(name: string): Promise<{ tenant: TenantView; apiKey: IssuedApiKey }>;
  get(tenantId: string): Promise<TenantView>;
  list(): Promise<TenantView[]>;
  issueApiKey(tenantId: string): Promise<IssuedApiKey>;
  revokeApiKey(tenantId: string, keyId: string): Promise<void>;
  /** Resolves a presented API key to its tenant, or null for an unknown or revoked key. */
  authenticate(presented: string): Promise<TenantCaller | null>;
  updateSettings(tenantId: string, patch: Partial<TenantSettings>): Promise<TenantView>;
}

export function createTenantService(deps: { db: Kysely<Database>; clock?: Clock }): TenantService {
  const { db } = deps;
  const clock = deps.clock ?? systemClock;
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

  return {
    async create(name) {
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
        return { tenant: toView(row), apiKey };
      });
    },
    get,
    async list() {
      const rows = await db.selectFrom('tenants').selectAll().orderBy('created_at').orderBy('id').execute();
      return rows.map(toView);
    },
    async issueApiKey(tenantId) {
      await get(tenantId);
      return insertKey(db, tenantId);
    },
    async revokeApiKey(tenantId, keyId) {
      const result = await db
        .updateTable('tenant_api_keys')
        .set({ revoked_at: clock.now() })
        .where('tenant_id', '=', tenantId)
        .where('id', '=', keyId)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
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
    async authenticate(presented) {
      if (!presented.startsWith(API_KEY_PREFIX) || presented.length > 200) return null;
      const hash = hashSecret(presented);
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
      return { tenantId: row.tenant_id, apiKeyId: row.id };
    },
    async updateSettings(tenantId, patch) {
      const current = await get(tenantId);
      const settings = { ...current.settings, ...patch };
      const row = await db
        .updateTable('tenants')
        .set({ settings: JSON.stringify(settings), updated_at: clock.now() })
        .where('id', '=', tenantId)
        .returningAll()
        .executeTakeFirstOrThrow();
      return toView(row);
    },
  };
}
