import { sql } from 'kysely';
import type { Kysely } from 'kysely';

/**
 * The audit trail. `audit_events` is partitioned by day on `expires_on` (occurred day +
 * the tenant's retention), so expiring records is always a DROP of a whole partition,
 * whatever each tenant's retention is. A default partition catches rows whose day has
 * no partition yet; the maintenance job moves them out. Records of a tenant are chained
 * by hash in `seq` order; `audit_chain_heads` holds each chain's last link and
 * `audit_chain_anchors` the last link of every range dropped by retention.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table audit_events (
      id text not null,
      tenant_id text not null,
      seq bigint not null,
      occurred_at timestamptz(3) not null,
      expires_on date not null,
      kind text not null,
      action text not null,
      outcome text not null check (outcome in ('success', 'error', 'refused', 'rate_limited', 'timeout')),
      execution_id text,
      identifier text,
      caller_type text not null,
      caller_id text,
      client_name text,
      client_version text,
      caller_ip text,
      agent_run_id text,
      tool_name text,
      connected_account_id text,
      upstream_method text,
      upstream_path_template text,
      upstream_path text,
      upstream_status integer,
      cf_ray text,
      error_code text,
      error_message text,
      duration_ms integer,
      request_bytes integer,
      response_bytes integer,
      code_sha256 text,
      code text,
      prev_hash text not null,
      hash text not null,
      primary key (expires_on, tenant_id, seq)
    ) partition by range (expires_on)`.execute(db);
  await sql`create index audit_events_time_idx on audit_events (tenant_id, occurred_at, seq)`.execute(db);
  await sql`create index audit_events_id_idx on audit_events (id)`.execute(db);
  await sql`create index audit_events_chain_idx on audit_events (tenant_id, seq)`.execute(db);
  await sql`create table audit_events_default partition of audit_events default`.execute(db);

  await db.schema
    .createTable('audit_chain_heads')
    .addColumn('tenant_id', 'text', (c) => c.primaryKey())
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('audit_chain_anchors')
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('from_seq', 'bigint', (c) => c.notNull())
    .addColumn('to_seq', 'bigint', (c) => c.notNull())
    .addColumn('row_count', 'bigint', (c) => c.notNull())
    .addColumn('first_prev_hash', 'text', (c) => c.notNull())
    .addColumn('last_hash', 'text', (c) => c.notNull())
    .addColumn('expires_on', 'date', (c) => c.notNull())
    .addColumn('dropped_at', sql`timestamptz(3)`, (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('audit_chain_anchors_pk', ['tenant_id', 'from_seq'])
    .execute();

  // Probing the write path without leaving a row: the insert runs in a subtransaction
  // that the raised exception rolls back. It runs with the caller's privileges, so it
  // fails exactly when a real audit write would (privileges, locks, outage).
  await sql`
    create function audit_write_probe(p_tenant text, p_expires_on date) returns void language plpgsql as $$
    begin
      -- Nothing of the probe survives, so its commit need not wait for a WAL flush.
      perform set_config('synchronous_commit', 'off', true);
      begin
        insert into audit_events (id, tenant_id, seq, occurred_at, expires_on, kind, action, outcome,
                                  caller_type, prev_hash, hash)
        values ('aud_probe', p_tenant, -1, now(), p_expires_on, 'probe', 'probe', 'success', 'system', '', '');
        raise exception using errcode = 'WP001';
      exception when sqlstate 'WP001' then
        return;
      end;
    end $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function if exists audit_write_probe(text, date)`.execute(db);
  await db.schema.dropTable('audit_chain_anchors').ifExists().execute();
  await db.schema.dropTable('audit_chain_heads').ifExists().execute();
  await sql`drop table if exists audit_events cascade`.execute(db);
}
