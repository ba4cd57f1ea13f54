import { sql } from 'kysely';
import type { Kysely } from 'kysely';

/**
 * The lease of an approval's apply: the replica applying a plan renews `apply_heartbeat_at` while
 * it runs and before every step it sends; once it is older than the lease, any replica settles the
 * apply as interrupted (a step whose write-ahead intent is on the trail reads as sent, its outcome
 * unknown; nothing is sent again).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('approvals')
    .addColumn('apply_heartbeat_at', sql`timestamptz(3)`)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('approvals').dropColumn('apply_heartbeat_at').execute();
}
