import type { Clock } from '@warden/core';
import { WardenError, hasControlCharacters, newId, notFound, storableText, systemClock } from '@warden/core';
import type { CloudflareCredential, R2Credentials, VerifiedCredential } from '@warden/cloudflare';
import { assertCredentialShape } from '@warden/cloudflare';
import { lifecycleRecord } from '@warden/audit';
import type {
  AuthorizationType,
  CloudflareAccountRef,
  ConnectedAccountRow,
  ConnectedAccountStatus,
  Database,
  SealedCredentialRow,
  TokenKind,
} from '@warden/db';
import { decodeCursor, encodeCursor } from '@warden/db';
import type { Kysely, Transaction } from 'kysely';
import type { ActorContext, LifecycleAudit } from './lifecycle.ts';
import { sealIdentity, sealedColumns, sealedFromColumns } from './envelope.ts';
import type { Envelope } from './envelope.ts';

export interface ConnectedAccount {
  readonly id: string;
  readonly tenantId: string;
  readonly identifier: string;
  readonly connectionName: string;
  readonly status: ConnectedAccountStatus;
  readonly authorizationType: AuthorizationType;
  readonly tokenKind: TokenKind;
  readonly cloudflare: {
    readonly userId: string | null;
    readonly accounts: readonly CloudflareAccountRef[];
    readonly tokenId: string | null;
    readonly tokenStatus: string;
    readonly expiresOn: Date | null;
  };
  /** The R2 access key pair vaulted beside the token, by its key id only; null when none is. */
  readonly r2AccessKey: { readonly accessKeyId: string; readonly createdAt: Date } | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly lastUsedAt: Date | null;
}

/**
 * Verifies a credential with Cloudflare. The requests carry `context` so they are budgeted and
 * audited like every other request sent with a credential.
 */
export type CredentialVerifier = (
  credential: CloudflareCredential,
  context: ActorContext & { readonly connectedAccountId: string; readonly identifier: string },
) => Promise<VerifiedCredential>;

/** A change running calls and cached contexts must hear of (on every replica). */
export interface AccountChange {
  readonly tenantId: string;
  readonly identifier: string;
  readonly accountId: string;
  readonly reason: 'revoked' | 'changed';
}

export type ConnectedAccountEventType =
  | 'connected_account.created'
  | 'connected_account.updated'
  | 'connected_account.status_updated'
  | 'connected_account.deleted';

/**
 * Called inside the transaction of each change, so a transactional outbox can record
 * the event with the change or not at all.
 */
export type ConnectedAccountEvents = (
  tx: Transaction<Database>,
  event: { type: ConnectedAccountEventType; account: ConnectedAccount },
) => Promise<void>;

export interface ListConnectedAccountsQuery {
  readonly identifier?: string;
  readonly connectionName?: string;
  readonly status?: ConnectedAccountStatus;
  readonly pageSize?: number;
  readonly pageToken?: string;
}

/** An account read together with its sealed credential. */
export interface OpenableAccount {
  readonly account: ConnectedAccount;
  /** Decrypts the credential read with the account (no further read); refuses unless ACTIVE. */
  open(): Promise<CloudflareCredential>;
  /** Decrypts the R2 access key pair read with the account; null when none is vaulted. */
  openR2(): Promise<R2Credentials | null>;
}

/** Which accounts `openable` reads: one by id (any status), or an identifier's ACTIVE ones. */
export type OpenableQuery =
  | { readonly id: string }
  | { readonly identifier: string; readonly connectionNames?: readonly string[] | null };

/** At most this many ACTIVE accounts of one identifier are read for a tool call. */
export const MAX_OPENABLE_ACCOUNTS = 100;

export interface ConnectedAccountService {
  create(
    ctx: ActorContext,
    input: { identifier: string; connectionName?: string; credential: CloudflareCredential },
  ): Promise<ConnectedAccount>;
  get(tenantId: string, id: string): Promise<ConnectedAccount>;
  list(
    tenantId: string,
    query: ListConnectedAccountsQuery,
  ): Promise<{ items: ConnectedAccount[]; nextPageToken: string | null }>;
  rotate(ctx: ActorContext, id: string, credential: CloudflareCredential): Promise<ConnectedAccount>;
  /**
   * Deletes the sealed credential and leaves a REVOKED tombstone. Idempotent. `keepCredential`:
   * the credential stays sealed (offboarding still needs it to revoke what the account made at
   * Cloudflare) until `purgeCredential`; `openRetained` opens it meanwhile.
   */
  revoke(
    ctx: ActorContext,
    id: string,
    options?: { readonly keepCredential?: boolean },
  ): Promise<ConnectedAccount>;
  /** The credential a REVOKED account still holds sealed (an offboarding not finished), or null. */
  openRetained(tenantId: string, id: string): Promise<CloudflareCredential | null>;
  /** Deletes what `revoke` kept sealed. Idempotent. */
  purgeCredential(tenantId: string, id: string): Promise<void>;
  /** Opens the credential of an ACTIVE account, for the parent process to inject upstream. */
  openCredential(
    tenantId: string,
    id: string,
  ): Promise<{ account: ConnectedAccount; credential: CloudflareCredential }>;
  /**
   * The accounts a tool call may run against, each with its sealed credential, in one read:
   * the tool-call path must not pay a second round trip to open the one it picks.
   */
  openable(tenantId: string, query: OpenableQuery): Promise<OpenableAccount[]>;
  setStatus(
    ctx: ActorContext,
    id: string,
    status: Exclude<ConnectedAccountStatus, 'REVOKED'>,
  ): Promise<ConnectedAccount>;
  /**
   * Vaults (or replaces) an R2 access key pair on an account: R2 requests sign with it instead of
   * the S3 credentials derived from the API token. Revoking the account deletes it.
   */
  setR2AccessKey(ctx: ActorContext, id: string, key: R2Credentials): Promise<ConnectedAccount>;
  /** Deletes the account's R2 access key pair (R2 requests go back to the token's). Idempotent. */
  removeR2AccessKey(ctx: ActorContext, id: string): Promise<ConnectedAccount>;
}

const DEFAULT_CONNECTION = 'cloudflare';
const MAX_PAGE_SIZE = 100;

type Row = ConnectedAccountRow & {
  connection_name: string;
  r2_access_key_id: string | null;
  r2_access_key_created_at: Date | null;
};
type SealedColumns = Pick<
  SealedCredentialRow,
  'key_provider' | 'key_id' | 'wrapped_key' | 'iv' | 'ciphertext' | 'seal_format'
>;
/** The account's R2 access key pair, sealed, read in the same query (all null when none). */
interface R2SealedColumns {
  readonly r2_key_provider: string | null;
  readonly r2_key_id: string | null;
  readonly r2_wrapped_key: Uint8Array | null;
  readonly r2_iv: Uint8Array | null;
  readonly r2_ciphertext: Uint8Array | null;
  readonly r2_seal_format: number | null;
}

function toAccount(row: Row): ConnectedAccount {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    identifier: row.identifier,
    connectionName: row.connection_name,
    status: row.status,
    authorizationType: row.authorization_type,
    tokenKind: row.token_kind,
    cloudflare: {
      userId: row.cf_user_id,
      accounts: row.cf_accounts,
      tokenId: row.cf_token_id,
      tokenStatus: row.token_status,
      expiresOn: row.expires_on,
    },
    r2AccessKey:
      row.r2_access_key_id !== null && row.r2_access_key_created_at !== null
        ? { accessKeyId: row.r2_access_key_id, createdAt: row.r2_access_key_created_at }
        : null,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    lastUsedAt: row.last_used_at,
  };
}

export function validateIdentifier(identifier: unknown, field = 'identifier'): string {
  if (typeof identifier !== 'string' || identifier.length === 0 || identifier.length > 256) {
    throw new WardenError(
      'invalid_request',
      `${field}: must be a non-empty string of at most 256 characters`,
      { field },
    );
  }
  if (hasControlCharacters(identifier)) {
    throw new WardenError('invalid_request', `${field}: must not contain control characters`, { field });
  }
  return identifier;
}

const R2_ACCESS_KEY_ID = /^[A-Za-z0-9]{16,128}$/;
const R2_SECRET = /^[\x21-\x7e]{16,256}$/;

/** An R2 access key pair as Cloudflare issues them (a 32-character id, a 64-character secret), loosely. */
export function validateR2AccessKey(key: R2Credentials): R2Credentials {
  if (typeof key.accessKeyId !== 'string' || !R2_ACCESS_KEY_ID.test(key.accessKeyId)) {
    throw new WardenError(
      'invalid_request',
      'access_key_id: must be the R2 Access Key ID (16-128 letters and digits, 32 as Cloudflare issues them)',
      { field: 'access_key_id' },
    );
  }
  if (typeof key.secretAccessKey !== 'string' || !R2_SECRET.test(key.secretAccessKey)) {
    throw new WardenError(
      'invalid_request',
      'secret_access_key: must be the R2 Secret Access Key (16-256 visible ASCII characters, 64 as Cloudflare issues them)',
      { field: 'secret_access_key' },
    );
  }
  return { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey };
}

function parseR2Key(plaintext: Buffer): R2Credentials {
  try {
    return JSON.parse(plaintext.toString('utf8')) as R2Credentials;
  } finally {
    plaintext.fill(0);
  }
}

function serializeCredential(credential: CloudflareCredential): Buffer {
  return Buffer.from(JSON.stringify(credential), 'utf8');
}

function parseCredential(plaintext: Buffer): CloudflareCredential {
  try {
    return JSON.parse(plaintext.toString('utf8')) as CloudflareCredential;
  } finally {
    plaintext.fill(0);
  }
}

function verifiedColumns(verified: VerifiedCredential) {
  return {
    token_kind: verified.tokenKind,
    cf_user_id: verified.userId,
    // Account names are free text an account's owner chose: made storable, never refused.
    cf_accounts: JSON.stringify(verified.accounts.map((a) => ({ id: a.id, name: storableText(a.name) }))),
    cf_token_id: verified.tokenId,
    token_status: verified.tokenStatus,
    expires_on: verified.expiresOn,
  };
}

export function createConnectedAccountService(deps: {
  db: Kysely<Database>;
  envelope: Envelope;
  verify: CredentialVerifier;
  events?: ConnectedAccountEvents;
  /** Writes lifecycle records inside the change's transaction. */
  audit?: LifecycleAudit;
  /** Told after a change committed, so running calls and caches on every replica hear of it. */
  onChange?: (change: AccountChange) => Promise<void> | void;
  clock?: Clock;
}): ConnectedAccountService {
  const { db, envelope, verify } = deps;
  const webhookEvents = deps.events ?? (async () => {});
  const audit = deps.audit ?? (async () => {});
  const changed = deps.onChange ?? (() => undefined);
  const clock = deps.clock ?? systemClock;

  /** One account event: the tenant's webhook outbox and the audit trail, in the change's transaction. */
  async function emit(
    tx: Transaction<Database>,
    ctx: ActorContext,
    event: { type: ConnectedAccountEventType; account: ConnectedAccount },
    details: Record<string, unknown> | null = null,
  ): Promise<void> {
    await webhookEvents(tx, event);
    await audit(tx, ctx.tenantId, [
      lifecycleRecord(
        { caller: ctx.actor, identifier: event.account.identifier, connectedAccountId: event.account.id },
        {
          kind: 'connected_account',
          action: event.type,
          details: {
            connection_name: event.account.connectionName,
            status: event.account.status,
            authorization_type: event.account.authorizationType,
            token_kind: event.account.tokenKind,
            cf_token_id: event.account.cloudflare.tokenId,
            ...details,
          },
        },
      ),
    ]);
  }
  const lastTouched = new Map<string, number>();

  function baseQuery(executor: Kysely<Database> | Transaction<Database>, tenantId: string) {
    return executor
      .selectFrom('connected_accounts as ca')
      .innerJoin('connections as c', (join) =>
        join.onRef('c.id', '=', 'ca.connection_id').onRef('c.tenant_id', '=', 'ca.tenant_id'),
      )
      .leftJoin('r2_access_keys as rk', (join) =>
        join.onRef('rk.connected_account_id', '=', 'ca.id').onRef('rk.tenant_id', '=', 'ca.tenant_id'),
      )
      .selectAll('ca')
      .select([
        'c.name as connection_name',
        'rk.access_key_id as r2_access_key_id',
        'rk.created_at as r2_access_key_created_at',
      ])
      .where('ca.tenant_id', '=', tenantId);
  }

  /** Marks the account changed at `now` and reads it back, in the change's transaction. */
  async function touched(
    tx: Transaction<Database>,
    tenantId: string,
    id: string,
    now: Date,
  ): Promise<ConnectedAccount> {
    await tx
      .updateTable('connected_accounts')
      .set({ updated_at: now })
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .execute();
    return toAccount(await findRow(tx, tenantId, id));
  }

  async function findRow(
    executor: Kysely<Database> | Transaction<Database>,
    tenantId: string,
    id: string,
    lock = false,
  ): Promise<Row> {
    let query = baseQuery(executor, tenantId).where('ca.id', '=', id);
    if (lock) query = query.forUpdate('ca');
    const row = await query.executeTakeFirst();
    if (!row) throw notFound('connected account');
    return row;
  }

  function sealedQuery(tenantId: string) {
    return baseQuery(db, tenantId)
      .innerJoin('sealed_credentials as s', (join) =>
        join.onRef('s.connected_account_id', '=', 'ca.id').onRef('s.tenant_id', '=', 'ca.tenant_id'),
      )
      .select(['s.key_provider', 's.key_id', 's.wrapped_key', 's.iv', 's.ciphertext', 's.seal_format'])
      .select([
        'rk.key_provider as r2_key_provider',
        'rk.key_id as r2_key_id',
        'rk.wrapped_key as r2_wrapped_key',
        'rk.iv as r2_iv',
        'rk.ciphertext as r2_ciphertext',
        'rk.seal_format as r2_seal_format',
      ]);
  }

  function refuseUnlessActive(row: Row): void {
    if (row.status !== 'ACTIVE') {
      throw new WardenError(
        'conflict',
        `connected account ${row.id} is ${row.status}; reconnect the credential`,
        {
          status: row.status,
        },
      );
    }
  }

  async function openR2Row(row: Row & R2SealedColumns): Promise<R2Credentials | null> {
    refuseUnlessActive(row);
    const sealed = sealedFromColumns({
      key_provider: row.r2_key_provider,
      key_id: row.r2_key_id,
      wrapped_key: row.r2_wrapped_key,
      iv: row.r2_iv,
      ciphertext: row.r2_ciphertext,
      seal_format: row.r2_seal_format ?? 2,
    });
    if (!sealed) return null;
    return parseR2Key(await envelope.open(sealIdentity('r2_access_key', row.tenant_id, row.id), sealed));
  }

  async function openRow(row: Row & SealedColumns): Promise<CloudflareCredential> {
    refuseUnlessActive(row);
    const sealed = sealedFromColumns(row);
    if (!sealed) throw new WardenError('integrity_failure', 'the sealed credential is missing');
    const plaintext = await envelope.open(sealIdentity('credential', row.tenant_id, row.id), sealed);
    const credential = parseCredential(plaintext);
    const now = clock.now().getTime();
    if ((lastTouched.get(row.id) ?? 0) < now - 60_000) {
      lastTouched.set(row.id, now);
      await db
        .updateTable('connected_accounts')
        .set({ last_used_at: new Date(now) })
        .where('tenant_id', '=', row.tenant_id)
        .where('id', '=', row.id)
        .execute();
    }
    return credential;
  }

  async function connectionId(tenantId: string, name: string): Promise<string> {
    const row = await db
      .selectFrom('connections')
      .select('id')
      .where('tenant_id', '=', tenantId)
      .where('name', '=', name)
      .executeTakeFirst();
    if (row) return row.id;
    const known = await db
      .selectFrom('connections')
      .select('name')
      .where('tenant_id', '=', tenantId)
      .orderBy('name')
      .execute();
    throw new WardenError(
      'invalid_request',
      `connection_name: unknown connection '${name}'; this tenant has: ${known.map((k) => k.name).join(', ') || 'none'}`,
      { field: 'connection_name' },
    );
  }

  return {
    async create(ctx, input) {
      const { tenantId } = ctx;
      const identifier = validateIdentifier(input.identifier);
      const connectionName = input.connectionName ?? DEFAULT_CONNECTION;
      const connId = await connectionId(tenantId, connectionName);
      assertCredentialShape(input.credential);
      const id = newId('ca');
      const verified = await verify(input.credential, { ...ctx, connectedAccountId: id, identifier });

      const duplicate = await baseQuery(db, tenantId)
        .where('ca.identifier', '=', identifier)
        .where('ca.connection_id', '=', connId)
        .where('ca.status', '=', 'ACTIVE')
        .where((eb) =>
          verified.tokenId !== null
            ? eb('ca.cf_token_id', '=', verified.tokenId)
            : eb.and([eb('ca.cf_token_id', 'is', null), eb('ca.cf_user_id', '=', verified.userId)]),
        )
        .executeTakeFirst();
      if (duplicate) {
        throw new WardenError(
          'conflict',
          `this credential is already connected for '${identifier}' as ${duplicate.id}; rotate it with PUT /api/v1/connected_accounts/${duplicate.id}`,
          { connectedAccountId: duplicate.id },
        );
      }

      // KMS is called before the transaction: if it is down nothing has been written.
      const sealed = await envelope.seal(
        sealIdentity('credential', tenantId, id),
        serializeCredential(input.credential),
      );
      return db.transaction().execute(async (tx) => {
        await tx
          .insertInto('connected_accounts')
          .values({
            id,
            tenant_id: tenantId,
            connection_id: connId,
            identifier,
            status: 'ACTIVE',
            authorization_type: input.credential.type,
            ...verifiedColumns(verified),
          })
          .execute();
        await tx
          .insertInto('sealed_credentials')
          .values({ connected_account_id: id, tenant_id: tenantId, ...sealedColumns(sealed) })
          .execute();
        const account = toAccount(await findRow(tx, tenantId, id));
        await emit(tx, ctx, { type: 'connected_account.created', account });
        return account;
      });
    },

    async get(tenantId, id) {
      return toAccount(await findRow(db, tenantId, id));
    },

    async list(tenantId, query) {
      const pageSize = query.pageSize ?? 20;
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
        throw new WardenError('invalid_request', `page_size: must be an integer from 1 to ${MAX_PAGE_SIZE}`, {
          field: 'page_size',
        });
      }
      let q = baseQuery(db, tenantId);
      if (query.identifier !== undefined)
        q = q.where('ca.identifier', '=', validateIdentifier(query.identifier));
      if (query.connectionName !== undefined)
        q = q.where('ca.connection_id', '=', await connectionId(tenantId, query.connectionName));
      if (query.status !== undefined) q = q.where('ca.status', '=', query.status);
      if (query.pageToken !== undefined) {
        const after = decodeCursor(query.pageToken);
        q = q.where(({ eb, refTuple, tuple }) =>
          eb(refTuple('ca.created_at', 'ca.id'), '>', tuple(after.createdAt, after.id)),
        );
      }
      const rows = await q
        .orderBy('ca.created_at')
        .orderBy('ca.id')
        .limit(pageSize + 1)
        .execute();
      const items = rows.slice(0, pageSize).map(toAccount);
      const last = items[items.length - 1];
      return {
        items,
        nextPageToken:
          rows.length > pageSize && last ? encodeCursor({ createdAt: last.createdAt, id: last.id }) : null,
      };
    },

    async rotate(ctx, id, credential) {
      const { tenantId } = ctx;
      const current = await findRow(db, tenantId, id);
      if (current.status === 'REVOKED') {
        throw new WardenError(
          'conflict',
          'this connected account is revoked; create a new one with POST /api/v1/connected_accounts',
        );
      }
      assertCredentialShape(credential);
      const verified = await verify(credential, {
        ...ctx,
        connectedAccountId: id,
        identifier: current.identifier,
      });
      const sealed = await envelope.seal(
        sealIdentity('credential', tenantId, id),
        serializeCredential(credential),
      );
      const rotated = await db.transaction().execute(async (tx) => {
        const locked = await findRow(tx, tenantId, id, true);
        if (locked.status === 'REVOKED') {
          throw new WardenError(
            'conflict',
            'this connected account was revoked while rotating; create a new one',
          );
        }
        const now = clock.now();
        await tx
          .updateTable('connected_accounts')
          .set({
            ...verifiedColumns(verified),
            authorization_type: credential.type,
            status: 'ACTIVE',
            updated_at: now,
          })
          .where('tenant_id', '=', tenantId)
          .where('id', '=', id)
          .execute();
        await tx
          .updateTable('sealed_credentials')
          .set({ ...sealedColumns(sealed), updated_at: now })
          .where('tenant_id', '=', tenantId)
          .where('connected_account_id', '=', id)
          .execute();
        const account = toAccount(await findRow(tx, tenantId, id));
        await emit(tx, ctx, { type: 'connected_account.updated', account }, { rotated: true });
        if (locked.status !== account.status)
          await emit(
            tx,
            ctx,
            { type: 'connected_account.status_updated', account },
            { previous_status: locked.status },
          );
        return account;
      });
      await changed({ tenantId, identifier: rotated.identifier, accountId: id, reason: 'changed' });
      return rotated;
    },

    async revoke(ctx, id, options = {}) {
      const { tenantId } = ctx;
      const revoked = await db.transaction().execute(async (tx) => {
        const row = await findRow(tx, tenantId, id, true);
        // An account revoked already may still hold its credential for an offboarding that stopped
        // half-way: only that offboarding (`purgeCredential`) deletes it.
        if (!options.keepCredential && row.status !== 'REVOKED') {
          await tx
            .deleteFrom('sealed_credentials')
            .where('tenant_id', '=', tenantId)
            .where('connected_account_id', '=', id)
            .execute();
        }
        await tx
          .deleteFrom('r2_access_keys')
          .where('tenant_id', '=', tenantId)
          .where('connected_account_id', '=', id)
          .execute();
        if (row.status !== 'REVOKED') {
          const now = clock.now();
          await tx
            .updateTable('connected_accounts')
            .set({ status: 'REVOKED', revoked_at: now, updated_at: now })
            .where('tenant_id', '=', tenantId)
            .where('id', '=', id)
            .execute();
        }
        const account = toAccount(await findRow(tx, tenantId, id));
        if (row.status !== 'REVOKED') await emit(tx, ctx, { type: 'connected_account.deleted', account });
        return account;
      });
      await changed({ tenantId, identifier: revoked.identifier, accountId: id, reason: 'revoked' });
      return revoked;
    },

    async openRetained(tenantId, id) {
      const row = await sealedQuery(tenantId)
        .where('ca.id', '=', id)
        .where('ca.status', '=', 'REVOKED')
        .executeTakeFirst();
      const sealed = row ? sealedFromColumns(row) : null;
      if (!row || !sealed) return null;
      return parseCredential(await envelope.open(sealIdentity('credential', row.tenant_id, row.id), sealed));
    },

    async purgeCredential(tenantId, id) {
      await db
        .deleteFrom('sealed_credentials')
        .where('tenant_id', '=', tenantId)
        .where('connected_account_id', '=', id)
        .where(({ exists, selectFrom }) =>
          exists(
            selectFrom('connected_accounts')
              .select('id')
              .where('tenant_id', '=', tenantId)
              .where('id', '=', id)
              .where('status', '=', 'REVOKED'),
          ),
        )
        .execute();
    },

    async openCredential(tenantId, id) {
      const row = await sealedQuery(tenantId).where('ca.id', '=', id).executeTakeFirst();
      if (!row) throw notFound('connected account');
      return { account: toAccount(row), credential: await openRow(row) };
    },

    async openable(tenantId, query) {
      let q = sealedQuery(tenantId);
      if ('id' in query) {
        q = q.where('ca.id', '=', query.id);
      } else {
        q = q
          .where('ca.identifier', '=', validateIdentifier(query.identifier))
          .where('ca.status', '=', 'ACTIVE');
        if (query.connectionNames) {
          if (query.connectionNames.length === 0) return [];
          q = q.where('c.name', 'in', query.connectionNames);
        }
      }
      const rows = await q.orderBy('ca.created_at').orderBy('ca.id').limit(MAX_OPENABLE_ACCOUNTS).execute();
      return rows.map((row) => ({
        account: toAccount(row),
        open: () => openRow(row),
        openR2: () => openR2Row(row),
      }));
    },

    async setR2AccessKey(ctx, id, input) {
      const { tenantId } = ctx;
      const key = validateR2AccessKey(input);
      const current = await findRow(db, tenantId, id);
      if (current.status === 'REVOKED') {
        throw new WardenError(
          'conflict',
          'this connected account is revoked; create a new one with POST /api/v1/connected_accounts',
        );
      }
      // Sealed whole, so the id that signs is the one sealed with the secret.
      const sealed = await envelope.seal(
        sealIdentity('r2_access_key', tenantId, id),
        Buffer.from(JSON.stringify(key), 'utf8'),
      );
      const updated = await db.transaction().execute(async (tx) => {
        const locked = await findRow(tx, tenantId, id, true);
        if (locked.status === 'REVOKED') {
          throw new WardenError('conflict', 'this connected account was revoked meanwhile; create a new one');
        }
        const now = clock.now();
        await tx
          .insertInto('r2_access_keys')
          .values({
            connected_account_id: id,
            tenant_id: tenantId,
            access_key_id: key.accessKeyId,
            ...sealedColumns(sealed),
          })
          .onConflict((oc) =>
            oc.column('connected_account_id').doUpdateSet({
              access_key_id: key.accessKeyId,
              ...sealedColumns(sealed),
              created_at: now,
              updated_at: now,
            }),
          )
          .execute();
        const account = await touched(tx, tenantId, id, now);
        await emit(
          tx,
          ctx,
          { type: 'connected_account.updated', account },
          {
            r2_access_key: locked.r2_access_key_id === null ? 'added' : 'replaced',
            r2_access_key_id: key.accessKeyId,
          },
        );
        return account;
      });
      await changed({ tenantId, identifier: updated.identifier, accountId: id, reason: 'changed' });
      return updated;
    },

    async removeR2AccessKey(ctx, id) {
      const { tenantId } = ctx;
      const result = await db.transaction().execute(async (tx) => {
        const locked = await findRow(tx, tenantId, id, true);
        if (locked.r2_access_key_id === null) return { account: toAccount(locked), removed: false };
        await tx
          .deleteFrom('r2_access_keys')
          .where('tenant_id', '=', tenantId)
          .where('connected_account_id', '=', id)
          .execute();
        const account = await touched(tx, tenantId, id, clock.now());
        await emit(
          tx,
          ctx,
          { type: 'connected_account.updated', account },
          { r2_access_key: 'removed', r2_access_key_id: locked.r2_access_key_id },
        );
        return { account, removed: true };
      });
      if (result.removed) {
        await changed({ tenantId, identifier: result.account.identifier, accountId: id, reason: 'changed' });
      }
      return result.account;
    },

    async setStatus(ctx, id, status) {
      const { tenantId } = ctx;
      const updated = await db.transaction().execute(async (tx) => {
        const before = await findRow(tx, tenantId, id, true);
        if (before.status === 'REVOKED' || before.status === status) return toAccount(before);
        await tx
          .updateTable('connected_accounts')
          .set({ status, updated_at: clock.now() })
          .where('tenant_id', '=', tenantId)
          .where('id', '=', id)
          .execute();
        const account = toAccount(await findRow(tx, tenantId, id));
        await emit(
          tx,
          ctx,
          { type: 'connected_account.status_updated', account },
          { previous_status: before.status },
        );
        return account;
      });
      if (updated.status !== 'ACTIVE') {
        await changed({ tenantId, identifier: updated.identifier, accountId: id, reason: 'revoked' });
      }
      return updated;
    },
  };
}
