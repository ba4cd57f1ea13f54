import { sql } from 'kysely';
import type { Kysely } from 'kysely';

/**
 * The write probe behind /readyz also reads `audit_sinks`, as every append does (its outbox rows
 * are one per enabled sink): a role that lost SELECT on it failed every append while /readyz
 * said ready.
 */
function probe(withSinks: boolean) {
  const sinks = withSinks
    ? sql`insert into outbox (tenant_id, destination_type, destination_id, event_id, payload)
          select p_tenant, 'audit_sink', s.id, 'aud_probe', '{}' from audit_sinks s
          where s.tenant_id = p_tenant and s.enabled;`
    : sql``;
  return sql`
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
        ${sinks}
        raise exception using errcode = 'WP001';
      exception when sqlstate 'WP001' then
        return;
      end;
    end $$`;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  await probe(true).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await probe(false).execute(db);
}
