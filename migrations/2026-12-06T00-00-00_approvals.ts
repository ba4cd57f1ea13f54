import { sql } from 'kysely';
import type { Kysely } from 'kysely';

const TIMESTAMP = sql`timestamptz(3)`;

/**
 * Write approvals (issue 15): an execution's writes that an `approve` policy rule held, as a plan
 * a person approves or rejects; on approval Warden sends exactly these writes, in order. The plan
 * is immutable once recorded (its SHA-256 is on the audit trail); the decision and the per-step
 * results are written once.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('approvals')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
    .addColumn('identifier', 'text', (c) => c.notNull())
    .addColumn('connected_account_id', 'text', (c) => c.notNull())
    .addColumn('execution_id', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sql`status in ('pending', 'approved', 'rejected', 'expired', 'applied', 'failed')`),
    )
    .addColumn('plan', 'jsonb', (c) => c.notNull())
    .addColumn('plan_sha256', 'text', (c) => c.notNull())
    .addColumn('dependent', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('requested_by', 'jsonb', (c) => c.notNull())
    .addColumn('created_at', TIMESTAMP, (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', TIMESTAMP, (c) => c.notNull())
    .addColumn('decided_by', 'jsonb')
    .addColumn('decided_at', TIMESTAMP)
    .addColumn('comment', 'text')
    .addColumn('results', 'jsonb')
    .addColumn('finished_at', TIMESTAMP)
    .execute();
  await sql`create index approvals_tenant_status_idx on approvals (tenant_id, status, created_at)`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('approvals').execute();
}
