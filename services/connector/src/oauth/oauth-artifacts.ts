import { createHash } from 'node:crypto';
import type { Database } from '@warden/db';
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import { errors } from 'oidc-provider';
import type { Adapter, AdapterPayload } from 'oidc-provider';

/**
 * Persistence of the authorization server in PostgreSQL (never process memory: replicas
 * share grants, codes, tokens and sessions). One table for every oidc-provider model and
 * for Warden's own short-lived sign-in records.
 */

/** Models whose id is not a bearer value: client ids are public, grant ids are only ever looked up. */
const PLAIN_ID_MODELS = new Set(['Client', 'Grant']);

function sha256(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('base64url');
}

function storedId(model: string, id: string): string {
  return PLAIN_ID_MODELS.has(model) ? id : sha256(id);
}

/** The signed-in identity as oidc-provider's account id: `ten_…:identifier` (tenant ids have no colon). */
export function accountIdFor(tenantId: string, identifier: string): string {
  return `${tenantId}:${identifier}`;
}

export function parseAccountId(accountId: unknown): { tenantId: string; identifier: string } | null {
  if (typeof accountId !== 'string') return null;
  const colon = accountId.indexOf(':');
  if (colon <= 0 || colon === accountId.length - 1) return null;
  return { tenantId: accountId.slice(0, colon), identifier: accountId.slice(colon + 1) };
}

function expiry(expiresIn: number | undefined): Date | null {
  return typeof expiresIn === 'number' ? new Date(Date.now() + expiresIn * 1000) : null;
}

const live = sql<boolean>`(expires_at is null or expires_at > now())`;

/** A string PostgreSQL's jsonb cannot hold: a NUL, or a surrogate without its pair. */
function unstorable(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\u0000') || !value.isWellFormed();
  if (Array.isArray(value)) return value.some(unstorable);
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).some(([key, item]) => unstorable(key) || unstorable(item));
  }
  return false;
}

/** The longest client name shown on a consent page. */
const MAX_CLIENT_NAME = 200;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);

/**
 * What registration accepts beyond oidc-provider's own checks, as OAuth 2.1 and the MCP
 * authorization spec ask: redirect URIs on https or on a loopback address (a native client's),
 * never plain http elsewhere; a client name a consent page can show.
 */
function checkClientMetadata(client: AdapterPayload): void {
  const name = client.client_name;
  if (typeof name === 'string' && name.length > MAX_CLIENT_NAME) {
    throw new errors.InvalidClientMetadata(`client_name: at most ${MAX_CLIENT_NAME} characters`);
  }
  const uris = Array.isArray(client.redirect_uris) ? (client.redirect_uris as unknown[]) : [];
  for (const uri of uris) {
    const url = typeof uri === 'string' ? URL.parse(uri) : null;
    const ok =
      url && (url.protocol === 'https:' || (url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname)));
    if (!ok) {
      throw new errors.InvalidRedirectUri('redirect_uris: each must be https, or http on a loopback address');
    }
  }
}

export interface ArtifactOptions {
  /**
   * A dynamically registered client lives this long unless a grant keeps it: each grant made
   * for it moves its expiry to the grant's, so an unused one is forgotten (and purged) and a
   * used one lasts as long as its latest grant could.
   */
  readonly unusedClientTtlSeconds: number;
}

class ArtifactAdapter implements Adapter {
  readonly #db: Kysely<Database>;
  readonly #model: string;
  readonly #options: ArtifactOptions | null;

  constructor(db: Kysely<Database>, model: string, options: ArtifactOptions | null) {
    this.#db = db;
    this.#model = model;
    this.#options = options;
  }

  /** How long a stored payload lives: oidc-provider saves registered clients without an expiry. */
  #lifetime(expiresIn: number | undefined): number | undefined {
    if (this.#model === 'Client' && expiresIn === undefined) return this.#options?.unusedClientTtlSeconds;
    return expiresIn;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    const account = parseAccountId(payload.accountId);
    // The raw id of a bearer value is not kept (find() is handed it back by the caller).
    const { jti: _jti, ...rest } = payload;
    const stored = PLAIN_ID_MODELS.has(this.#model) ? payload : rest;
    // Refused as the client's mistake (400), not a database failure (500): client metadata
    // from registration or a metadata document is the only text here a stranger chooses.
    if (unstorable(stored)) {
      const message = 'text with a NUL character or an unpaired surrogate cannot be stored';
      throw this.#model === 'Client'
        ? new errors.InvalidClientMetadata(`client metadata: ${message}`)
        : new errors.InvalidRequest(message);
    }
    if (this.#model === 'Client') checkClientMetadata(stored);
    const values = {
      payload: JSON.stringify(stored),
      grant_id: typeof payload.grantId === 'string' ? payload.grantId : null,
      uid: typeof payload.uid === 'string' ? payload.uid : null,
      tenant_id: account?.tenantId ?? null,
      identifier: account?.identifier ?? null,
      client_id: typeof payload.clientId === 'string' ? payload.clientId : null,
      expires_at: expiry(this.#lifetime(expiresIn)),
    };
    await this.#db
      .insertInto('oauth_artifacts')
      .values({ model: this.#model, id: storedId(this.#model, id), ...values })
      .onConflict((oc) => oc.columns(['model', 'id']).doUpdateSet(values))
      .execute();
    if (this.#model === 'Grant' && values.client_id !== null) {
      await keepClientFor(this.#db, values.client_id, values.expires_at);
    }
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const row = await this.#db
      .selectFrom('oauth_artifacts')
      .select(['payload', 'consumed_at'])
      .where('model', '=', this.#model)
      .where('id', '=', storedId(this.#model, id))
      .where(live)
      .executeTakeFirst();
    if (!row) return undefined;
    return {
      ...(row.payload as AdapterPayload),
      ...(PLAIN_ID_MODELS.has(this.#model) ? {} : { jti: id }),
      ...(row.consumed_at ? { consumed: Math.floor(row.consumed_at.getTime() / 1000) } : {}),
    };
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    const row = await this.#db
      .selectFrom('oauth_artifacts')
      .select('payload')
      .where('model', '=', this.#model)
      .where('uid', '=', uid)
      .where(live)
      .executeTakeFirst();
    return row ? (row.payload as AdapterPayload) : undefined;
  }

  async findByUserCode(): Promise<undefined> {
    // The device flow is not enabled; no model is ever stored by user code.
    return undefined;
  }

  /**
   * Uses a code or refresh token up, atomically: oidc-provider checks `consumed` on what it read
   * and consumes afterwards, so two requests presenting the same one at once both passed the
   * check (both redemptions of a code, and both rotations of a refresh token, succeeded). Only
   * the request that flips `consumed_at` goes on; the other is a reuse, refused `invalid_grant`,
   * and revokes the whole grant (RFC 9700 §4.14, and what oidc-provider does for a later reuse).
   */
  async consume(id: string): Promise<void> {
    const claimed = await this.#db
      .updateTable('oauth_artifacts')
      .set({ consumed_at: new Date() })
      .where('model', '=', this.#model)
      .where('id', '=', storedId(this.#model, id))
      .where('consumed_at', 'is', null)
      .returning('grant_id')
      .executeTakeFirst();
    if (claimed) return;
    const row = await this.#db
      .selectFrom('oauth_artifacts')
      .select('grant_id')
      .where('model', '=', this.#model)
      .where('id', '=', storedId(this.#model, id))
      .executeTakeFirst();
    if (row?.grant_id) {
      const grantId = row.grant_id;
      await this.#db.transaction().execute(async (trx) => {
        await trx.deleteFrom('oauth_artifacts').where('grant_id', '=', grantId).execute();
        await trx
          .deleteFrom('oauth_artifacts')
          .where('model', '=', 'Grant')
          .where('id', '=', grantId)
          .execute();
      });
    }
    throw new errors.InvalidGrant(
      `${this.#model === 'RefreshToken' ? 'refresh token' : 'authorization code'} already used`,
    );
  }

  async destroy(id: string): Promise<void> {
    await this.#db
      .deleteFrom('oauth_artifacts')
      .where('model', '=', this.#model)
      .where('id', '=', storedId(this.#model, id))
      .execute();
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.#db
      .deleteFrom('oauth_artifacts')
      .where('model', '=', this.#model)
      .where('grant_id', '=', grantId)
      .execute();
  }
}

/**
 * A registered client with a grant lives at least as long as the grant. Clients of a metadata
 * document are not stored (oidc-provider fetches and caches the document), so nothing matches.
 */
async function keepClientFor(db: Kysely<Database>, clientId: string, grantExpiresAt: Date | null) {
  await db
    .updateTable('oauth_artifacts')
    .set({
      expires_at: grantExpiresAt === null ? null : sql<Date>`greatest(expires_at, ${grantExpiresAt})`,
    })
    .where('model', '=', 'Client')
    .where('id', '=', clientId)
    .where('expires_at', '>', sql<Date>`now()`)
    .execute();
}

export function artifactAdapterFactory(
  db: Kysely<Database>,
  options: ArtifactOptions,
): (model: string) => Adapter {
  return (model) => new ArtifactAdapter(db, model, options);
}

/** Warden's own records (pending SSO sign-ins, login links, consents) in the same table. */
export function createRecordStore<T extends object>(db: Kysely<Database>, model: string) {
  return {
    async put(id: string, payload: T & { accountId?: string }, ttlSeconds: number): Promise<void> {
      await new ArtifactAdapter(db, model, null).upsert(id, payload as AdapterPayload, ttlSeconds);
    },
    /** Reads without using up (to show what a link would do). */
    async peek(id: string): Promise<T | null> {
      const payload = await new ArtifactAdapter(db, model, null).find(id);
      return payload && !payload.consumed ? (payload as T) : null;
    },
    /** Uses the record up: of concurrent takes, exactly one gets it; expired or used → null. */
    async take(id: string): Promise<T | null> {
      const row = await db
        .updateTable('oauth_artifacts')
        .set({ consumed_at: new Date() })
        .where('model', '=', model)
        .where('id', '=', storedId(model, id))
        .where('consumed_at', 'is', null)
        .where(live)
        .returning('payload')
        .executeTakeFirst();
      return row ? (row.payload as T) : null;
    },
  };
}

/** Deletes every grant, code, token and session of an identity; returns how many grants it had. */
export async function revokeOAuthGrantsOf(
  db: Kysely<Database>,
  tenantId: string,
  identifier: string,
): Promise<number> {
  const rows = await db
    .deleteFrom('oauth_artifacts')
    .where('tenant_id', '=', tenantId)
    .where('identifier', '=', identifier)
    .returning('model')
    .execute();
  return rows.filter((r) => r.model === 'Grant').length;
}

/** Whether an OAuth grant of the tenant still stands (not revoked, not expired). */
export async function isOAuthGrantActive(
  db: Kysely<Database>,
  tenantId: string,
  grantId: string,
): Promise<boolean> {
  const row = await db
    .selectFrom('oauth_artifacts')
    .select('id')
    .where('model', '=', 'Grant')
    .where('id', '=', storedId('Grant', grantId))
    .where('tenant_id', '=', tenantId)
    .where(live)
    .executeTakeFirst();
  return row !== undefined;
}

/** Expired artifacts are invisible already; this reclaims their rows. */
export async function purgeExpiredOAuthArtifacts(db: Kysely<Database>): Promise<number> {
  const result = await db
    .deleteFrom('oauth_artifacts')
    .where('expires_at', '<', sql<Date>`now() - interval '1 hour'`)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
