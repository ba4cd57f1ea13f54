import { sql } from 'kysely';
import type { Kysely } from 'kysely';

/**
 * How a credential made through Warden is revoked: a DELETE of it (what every row held so far),
 * or, for a secret the agent replaced and saw (a rolled token value, a rotated service-token
 * secret), the same PUT or POST sent once more, so the value the agent saw dies.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('minted_credentials')
    .addColumn('revoke_method', 'text', (c) =>
      c
        .notNull()
        .defaultTo('DELETE')
        .check(sql`revoke_method in ('DELETE', 'PUT', 'POST')`),
    )
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('minted_credentials').dropColumn('revoke_method').execute();
}
