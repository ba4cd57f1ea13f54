import type { Database } from '@warden/db';
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import { isWardenError } from '@warden/core';
import {
  CURRENT_SEAL_FORMAT,
  SYSTEM_TENANT,
  sealIdentity,
  sealedColumns,
  sealedFromColumns,
} from './envelope.ts';
import type { Envelope, SealIdentity, SealedKind, SealedSecret } from './envelope.ts';

/**
 * Every table that holds envelope-sealed secrets, with the row identity each secret is sealed to
 * (its KMS context and AAD). Rotation, retirement and `keys status` go through this one list: a
 * table that seals something later is added here, or its secrets stop opening after a retirement.
 * The sealed columns are `key_provider`, `key_id`, `wrapped_key`, `iv` and `ciphertext`.
 */
export interface SealedTable {
  readonly table: string;
  readonly kind: SealedKind;
  /** The column that names a row (unique). */
  readonly rowKey: string;
  /** The identity a row's secret is sealed to, from its `tenant_id` and row key. */
  identity(row: { readonly tenant_id: string | null; readonly row_key: string }): SealIdentity;
}

export const SEALED_TABLES: readonly SealedTable[] = [
  {
    table: 'sealed_credentials',
    kind: 'credential',
    rowKey: 'connected_account_id',
    identity: (row) => sealIdentity('credential', row.tenant_id ?? '', row.row_key),
  },
  // A connected account's R2 access key pair, sealed to the account's id (connected-accounts.service.ts).
  {
    table: 'r2_access_keys',
    kind: 'r2_access_key',
    rowKey: 'connected_account_id',
    identity: (row) => sealIdentity('r2_access_key', row.tenant_id ?? '', row.row_key),
  },
  // Sink and webhook secrets are sealed to their row id (delivery.service.ts).
  {
    table: 'audit_sinks',
    kind: 'siem_sink',
    rowKey: 'id',
    identity: (row) => sealIdentity('siem_sink', row.tenant_id ?? '', row.row_key),
  },
  {
    table: 'tenant_webhooks',
    kind: 'webhook',
    rowKey: 'id',
    identity: (row) => sealIdentity('webhook', row.tenant_id ?? '', row.row_key),
  },
  // The tenant's SSO client secret (sso-configs.service.ts): one per tenant.
  {
    table: 'tenant_sso_configs',
    kind: 'sso_client_secret',
    rowKey: 'tenant_id',
    identity: (row) => sealIdentity('sso_client_secret', row.row_key, row.row_key),
  },
  // The MCP sign-in server's cookie and token-signing keys (one row, oauth-keys.ts).
  {
    table: 'oauth_server_keys',
    kind: 'oauth_server_keys',
    rowKey: 'id',
    identity: (row) => sealIdentity('oauth_server_keys', SYSTEM_TENANT, row.row_key),
  },
];

export interface RewrapReport {
  readonly currentKeyId: string;
  readonly rewrapped: number;
  /** Rows that changed underneath (rotated or revoked concurrently) and were left as they are. */
  readonly skipped: number;
  /** Rows of the first seal format sealed again by kind and id (counted in `rewrapped` too). */
  readonly resealed: number;
  /** Rows whose data key could not be re-wrapped (e.g. corrupted); they keep their old wrap. */
  readonly failed: ReadonlyArray<{ readonly table: string; readonly id: string; readonly code: string }>;
}

interface SealedRow {
  readonly tenant_id: string | null;
  readonly row_key: string;
  readonly key_provider: string;
  readonly key_id: string;
  readonly wrapped_key: Buffer;
  readonly iv: Buffer;
  readonly ciphertext: Buffer;
  readonly seal_format: number;
}

function tenantColumn(table: SealedTable) {
  return table.table === 'oauth_server_keys' ? sql<null>`null` : sql.ref('tenant_id');
}

/**
 * Key rotation across all tenants and every sealed table (an operator task): every data key not
 * wrapped under the provider's current key is re-wrapped. Secrets are never decrypted; each row
 * is updated only if it still holds the wrap that was re-encrypted.
 */
export function createKeyRotationService(deps: { db: Kysely<Database>; envelope: Envelope }) {
  const { db, envelope } = deps;
  const raw = db as unknown as Kysely<never>;

  /** Data keys wrapped under each key-encryption key, over every sealed table. */
  async function countByKey(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const table of SEALED_TABLES) {
      const { rows } = await sql<{ key_id: string; n: string }>`
        select key_id, count(*)::text as n from ${sql.table(table.table)}
        where key_id is not null group by key_id`.execute(raw);
      for (const row of rows) counts[row.key_id] = (counts[row.key_id] ?? 0) + Number(row.n);
    }
    return counts;
  }

  return {
    async rewrapAll(options: { all?: boolean; batchSize?: number } = {}): Promise<RewrapReport> {
      const currentKeyId = await envelope.keys.currentKeyId();
      const batchSize = options.batchSize ?? 100;
      let rewrapped = 0;
      let resealed = 0;
      let skipped = 0;
      const failed: Array<{ table: string; id: string; code: string }> = [];
      for (const table of SEALED_TABLES) {
        const key = sql.ref(table.rowKey);
        let after = '';
        for (;;) {
          // Rows of the first seal format are sealed again whatever key wraps them.
          const due = options.all ? sql`true` : sql`(key_id <> ${currentKeyId} or seal_format = 1)`;
          const { rows } = await sql<SealedRow>`
            select ${tenantColumn(table)} as tenant_id, ${key} as row_key, key_provider, key_id,
                   wrapped_key, iv, ciphertext, seal_format
            from ${sql.table(table.table)}
            where ${key} > ${after} and key_id is not null and ciphertext is not null and ${due}
            order by ${key} limit ${batchSize}`.execute(raw);
          if (rows.length === 0) break;
          for (const row of rows) {
            after = row.row_key;
            const sealed = sealedFromColumns(row);
            if (!sealed) continue;
            const identity = table.identity(row);
            const legacy = sealed.format !== CURRENT_SEAL_FORMAT;
            let next: SealedSecret;
            try {
              next = legacy
                ? await envelope.reseal(identity, sealed)
                : await envelope.rewrap(identity, sealed);
            } catch (error) {
              // An outage stops the run (it would fail every row); a single bad row does not.
              if (isWardenError(error) && error.code === 'integrity_failure') {
                failed.push({ table: table.table, id: row.row_key, code: error.code });
                continue;
              }
              throw error;
            }
            // Only if the row still holds the secret that was read (not rotated or revoked since).
            const columns = sealedColumns(next);
            const result = await sql`
              update ${sql.table(table.table)}
              set key_provider = ${columns.key_provider}, key_id = ${columns.key_id},
                  wrapped_key = ${columns.wrapped_key}, iv = ${columns.iv},
                  ciphertext = ${columns.ciphertext}, seal_format = ${columns.seal_format}
              where ${key} = ${row.row_key} and key_id = ${row.key_id}
                and wrapped_key = ${sealed.wrappedKey} and ciphertext = ${sealed.ciphertext}`.execute(raw);
            if (result.numAffectedRows === 1n) {
              rewrapped++;
              if (legacy) resealed++;
            } else skipped++;
          }
        }
      }
      return { currentKeyId, rewrapped, resealed, skipped, failed };
    },

    /** Sealed secrets, over every table, still in a format before the current one. */
    async countLegacyFormat(): Promise<number> {
      let n = 0;
      for (const table of SEALED_TABLES) {
        const { rows } = await sql<{ n: string }>`
          select count(*)::text as n from ${sql.table(table.table)}
          where key_id is not null and seal_format <> ${CURRENT_SEAL_FORMAT}`.execute(raw);
        n += Number(rows[0]?.n ?? 0);
      }
      return n;
    },

    countByKey,

    /** How many data keys, in any sealed table, are still wrapped under `keyId` (0: it can be retired). */
    async countWrappedUnder(keyId: string): Promise<number> {
      return (await countByKey())[keyId] ?? 0;
    },
  };
}

export type KeyRotationService = ReturnType<typeof createKeyRotationService>;
