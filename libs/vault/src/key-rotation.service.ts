import type { Database } from '@warden/db';
import type { Kysely } from 'kysely';
import { isWardenError } from '@warden/core';
import type { Envelope, SealedSecret } from './envelope.ts';

export interface RewrapReport {
  readonly currentKeyId: string;
  readonly rewrapped: number;
  /** Rows that changed underneath (rotated or revoked concurrently) and were left as they are. */
  readonly skipped: number;
  /** Rows whose data key could not be re-wrapped (e.g. corrupted); they keep their old wrap. */
  readonly failed: ReadonlyArray<{ readonly connectedAccountId: string; readonly code: string }>;
}

/**
 * Key rotation across all tenants (an operator task): every data key not wrapped
 * under the provider's current key is re-wrapped. Credentials are never decrypted;
 * each row is updated only if it still holds the wrap that was re-encrypted.
 */
export function createKeyRotationService(deps: { db: Kysely<Database>; envelope: Envelope }) {
  const { db, envelope } = deps;

  return {
    async rewrapAll(options: { all?: boolean; batchSize?: number } = {}): Promise<RewrapReport> {
      const currentKeyId = await envelope.keys.currentKeyId();
      const batchSize = options.batchSize ?? 100;
      let rewrapped = 0;
      let skipped = 0;
      const failed: Array<{ connectedAccountId: string; code: string }> = [];
      let after = '';
      for (;;) {
        let query = db
          .selectFrom('sealed_credentials')
          .selectAll()
          .where('connected_account_id', '>', after)
          .orderBy('connected_account_id')
          .limit(batchSize);
        if (!options.all) query = query.where('key_id', '!=', currentKeyId);
        const rows = await query.execute();
        if (rows.length === 0) break;
        for (const row of rows) {
          after = row.connected_account_id;
          const identity = { tenantId: row.tenant_id, connectedAccountId: row.connected_account_id };
          let next: SealedSecret;
          try {
            next = await envelope.rewrap(identity, {
              keyProvider: row.key_provider,
              keyId: row.key_id,
              wrappedKey: Buffer.from(row.wrapped_key),
              iv: Buffer.from(row.iv),
              ciphertext: Buffer.from(row.ciphertext),
            });
          } catch (error) {
            // An outage stops the run (it would fail every row); a single bad row does not.
            if (isWardenError(error) && error.code === 'integrity_failure') {
              failed.push({ connectedAccountId: row.connected_account_id, code: error.code });
              continue;
            }
            throw error;
          }
          const result = await db
            .updateTable('sealed_credentials')
            .set({
              key_provider: next.keyProvider,
              key_id: next.keyId,
              wrapped_key: next.wrappedKey,
              updated_at: new Date(),
            })
            .where('connected_account_id', '=', row.connected_account_id)
            .where('tenant_id', '=', row.tenant_id)
            .where('key_id', '=', row.key_id)
            .where('wrapped_key', '=', Buffer.from(row.wrapped_key))
            .executeTakeFirst();
          if (result.numUpdatedRows === 1n) rewrapped++;
          else skipped++;
        }
      }
      return { currentKeyId, rewrapped, skipped, failed };
    },

    /** How many data keys are still wrapped under `keyId` (a key can be retired when this is 0). */
    async countWrappedUnder(keyId: string): Promise<number> {
      const row = await db
        .selectFrom('sealed_credentials')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('key_id', '=', keyId)
        .executeTakeFirstOrThrow();
      return Number(row.n);
    },
  };
}

export type KeyRotationService = ReturnType<typeof createKeyRotationService>;
