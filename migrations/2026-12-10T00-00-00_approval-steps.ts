import type { Kysely } from 'kysely';

/**
 * Applying a dependent plan in steps (issue 15): the planning code (kept only when the tenant's
 * audit settings capture code) and the account id it ran with, to re-run it with each step's
 * real results; and the steps so far, each with the writes approving it sends and its decision.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('approvals')
    .addColumn('replay_code', 'text')
    .addColumn('replay_account_id', 'text')
    .addColumn('steps', 'jsonb')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('approvals')
    .dropColumn('replay_code')
    .dropColumn('replay_account_id')
    .dropColumn('steps')
    .execute();
}
