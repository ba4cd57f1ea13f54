import { sql } from 'kysely';
import type { Kysely } from 'kysely';

/**
 * An audit trail that holds against whoever controls the database.
 *
 * `audit_checkpoints`: signed digests of each tenant's chain head, made periodically and before
 * retention drops a partition, by a key the database never holds. Each names the one before it
 * (`previous_digest`), so a removed checkpoint shows; one made at a partition close also lists
 * the retention anchors it vouches for.
 *
 * Partition maintenance (create, rescue the default partition, drop an expired day) goes through
 * SECURITY DEFINER functions, so the application's role needs no DDL and no UPDATE or DELETE on
 * the trail: `warden db roles` gives those functions and the trail's tables to a maintenance
 * role and leaves the application role INSERT and SELECT. The drop function decides expiry on
 * the database's own clock, so no caller can drop a day that has not passed.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table audit_checkpoints (
      tenant_id text not null,
      number bigint not null,
      id text not null unique,
      seq bigint not null,
      hash text not null,
      head_at timestamptz(3),
      signed_at timestamptz(3) not null,
      reason text not null,
      previous_digest text not null,
      anchors jsonb not null default '[]',
      digest text not null,
      key_id text not null,
      algorithm text not null,
      signature text not null,
      primary key (tenant_id, number)
    )`.execute(db);

  // The functions run with their owner's rights: pin the schema they were created in, and look
  // in pg_temp last, so a caller's objects can never stand in for the trail's.
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = sql.id(rows[0]?.schema ?? 'public');

  await sql`
    create function audit_partition_anchors(p_partition text)
    returns table (tenant_id text, from_seq bigint, to_seq bigint, row_count bigint,
                   first_prev_hash text, last_hash text)
    language plpgsql stable security definer set search_path = ${schema}, pg_temp as $$
    begin
      if p_partition !~ '^audit_events_p[0-9]{8}$' then
        raise exception 'not an audit partition: %', p_partition using errcode = '22023';
      end if;
      return query execute format($q$
        select r.tenant_id, min(r.seq), max(r.seq), count(*),
               (array_agg(r.prev_hash order by r.seq))[1], (array_agg(r.hash order by r.seq desc))[1]
        from (
          select e.tenant_id, e.seq, e.prev_hash, e.hash,
                 e.seq - row_number() over (partition by e.tenant_id order by e.seq) as run
          from %I e
        ) r
        group by r.tenant_id, r.run
        order by r.tenant_id, min(r.seq)$q$, p_partition);
    end $$`.execute(db);

  await sql`
    create function audit_create_partition(p_day date) returns boolean
    language plpgsql security definer set search_path = ${schema}, pg_temp as $$
    declare
      v_name text := 'audit_events_p' || to_char(p_day, 'YYYYMMDD');
    begin
      -- Replicas starting together run maintenance together: serialize DDL on the table.
      perform pg_advisory_xact_lock(744201117);
      if exists (select from pg_class where relname = v_name) then
        return false;
      end if;
      -- Rows for this day may already sit in the default partition: attaching would fail,
      -- so build the table, move them in, then attach.
      execute format('create table %I (like audit_events including defaults including constraints)', v_name);
      execute format('insert into %I select * from audit_events_default where expires_on = %L::date', v_name, p_day);
      delete from audit_events_default where expires_on = p_day;
      execute format('alter table audit_events attach partition %I for values from (%L) to (%L)',
                     v_name, p_day, p_day + 1);
      return true;
    end $$`.execute(db);

  await sql`
    create function audit_rescue_default() returns bigint
    language plpgsql security definer set search_path = ${schema}, pg_temp as $$
    declare
      v_day record;
      v_moved bigint := 0;
    begin
      for v_day in select expires_on, count(*) as n from audit_events_default group by 1 order by 1 loop
        perform audit_create_partition(v_day.expires_on);
        v_moved := v_moved + v_day.n;
      end loop;
      return v_moved;
    end $$`.execute(db);

  await sql`
    create function audit_drop_partition(p_partition text) returns boolean
    language plpgsql security definer set search_path = ${schema}, pg_temp as $$
    declare
      v_day date;
    begin
      if p_partition !~ '^audit_events_p[0-9]{8}$' then
        raise exception 'not an audit partition: %', p_partition using errcode = '22023';
      end if;
      v_day := to_date(substr(p_partition, 15), 'YYYYMMDD');
      -- The database's clock decides what has expired, never the caller's.
      if v_day >= (now() at time zone 'utc')::date then
        return false;
      end if;
      perform pg_advisory_xact_lock(744201117);
      if not exists (
        select from pg_inherits i
        join pg_class c on c.oid = i.inhrelid
        join pg_class p on p.oid = i.inhparent
        where p.relname = 'audit_events' and c.relname = p_partition
      ) then
        return false;
      end if;
      -- The last hash of each chain run in the day is kept, so verify tells expiry from deletion.
      insert into audit_chain_anchors (tenant_id, from_seq, to_seq, row_count, first_prev_hash, last_hash, expires_on)
      select a.tenant_id, a.from_seq, a.to_seq, a.row_count, a.first_prev_hash, a.last_hash, v_day
      from audit_partition_anchors(p_partition) a
      on conflict (tenant_id, from_seq) do nothing;
      execute format('drop table %I', p_partition);
      return true;
    end $$`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop function if exists audit_drop_partition(text)`.execute(db);
  await sql`drop function if exists audit_rescue_default()`.execute(db);
  await sql`drop function if exists audit_create_partition(date)`.execute(db);
  await sql`drop function if exists audit_partition_anchors(text)`.execute(db);
  await sql`drop table if exists audit_checkpoints`.execute(db);
}
