import { sql } from 'kysely';
import type { Kysely } from 'kysely';

/**
 * Write-ahead audit: an upstream request is recorded as an intent (`outcome = 'pending'`)
 * committed before it is sent, and its outcome as a second record naming the intent
 * (`intent_id`). An intent whose outcome never came is later closed by an `unknown` outcome.
 * `body_sha256` fingerprints a request body; `details` carries lifecycle changes (old → new).
 * The chain head keeps the time of its record, so times never go backwards along a chain.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table audit_events add column intent_id text, add column body_sha256 text, add column details jsonb`.execute(
    db,
  );
  await sql`alter table audit_events drop constraint if exists audit_events_outcome_check`.execute(db);
  await sql`
    alter table audit_events add constraint audit_events_outcome_check
    check (outcome in ('success', 'error', 'refused', 'rate_limited', 'timeout', 'pending', 'unknown'))`.execute(
    db,
  );
  await sql`create index audit_events_intent_idx on audit_events (intent_id) where intent_id is not null`.execute(
    db,
  );
  await sql`create index audit_events_pending_idx on audit_events (occurred_at) where outcome = 'pending'`.execute(
    db,
  );
  await sql`alter table audit_chain_heads add column occurred_at timestamptz(3)`.execute(db);
  // How far the sweeper that closes intents without an outcome has looked, so each pass reads
  // only the intents written since the last one.
  await sql`create table audit_sweeps (name text primary key, swept_until timestamptz(3) not null)`.execute(
    db,
  );

  // The probe now proves every table an append writes takes a write: the records, the chain
  // head (an UPDATE) and the outbox. All of it happens in a subtransaction rolled back by the
  // raised exception, with the caller's privileges.
  await sql`
    create or replace function audit_write_probe(p_tenant text, p_expires_on date) returns void language plpgsql as $$
    begin
      perform set_config('synchronous_commit', 'off', true);
      begin
        insert into audit_events (id, tenant_id, seq, occurred_at, expires_on, kind, action, outcome,
                                  caller_type, prev_hash, hash)
        values ('aud_probe', p_tenant, -1, now(), p_expires_on, 'probe', 'probe', 'success', 'system', '', '');
        insert into audit_chain_heads (tenant_id, seq, hash) values ('probe:' || p_tenant, 0, '')
          on conflict (tenant_id) do update set seq = excluded.seq;
        update audit_chain_heads set seq = seq where tenant_id = p_tenant;
        insert into outbox (tenant_id, destination_type, destination_id, event_id, payload)
          values (p_tenant, 'audit_sink', 'probe', 'aud_probe', '{}');
        raise exception using errcode = 'WP001';
      exception when sqlstate 'WP001' then
        return;
      end;
    end $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table if exists audit_sweeps`.execute(db);
  await sql`alter table audit_chain_heads drop column if exists occurred_at`.execute(db);
  await sql`drop index if exists audit_events_pending_idx`.execute(db);
  await sql`drop index if exists audit_events_intent_idx`.execute(db);
  await sql`alter table audit_events drop constraint if exists audit_events_outcome_check`.execute(db);
  await sql`
    alter table audit_events add constraint audit_events_outcome_check
    check (outcome in ('success', 'error', 'refused', 'rate_limited', 'timeout'))`.execute(db);
  await sql`alter table audit_events drop column if exists intent_id, drop column if exists body_sha256, drop column if exists details`.execute(
    db,
  );
}
