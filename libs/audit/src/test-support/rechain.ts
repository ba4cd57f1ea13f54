import type { Database } from '@warden/db';
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import type { AuditEvent } from '../audit-event.ts';
import { GENESIS_HASH, hashEvent } from '../audit-hash.ts';
import { rowToEvent } from '../audit.store.ts';

/**
 * What whoever controls the database can do to the hash chain: rewrite a record (`edit`), then
 * recompute every hash from it on with the project's own `hashEvent` and move the chain head,
 * so the chain is consistent again. Only a signed checkpoint can tell.
 */
export async function rechain(
  db: Kysely<Database>,
  tenantId: string,
  fromSeq: number,
  edit: (event: AuditEvent) => AuditEvent,
): Promise<void> {
  const rows = await db
    .selectFrom('audit_events')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('seq')
    .execute();
  let prev = GENESIS_HASH;
  for (const row of rows) {
    let event = rowToEvent(row);
    if (event.seq === fromSeq) event = edit(event);
    if (event.seq >= fromSeq) {
      const { hash: _old, ...unsigned } = { ...event, prev_hash: prev };
      const hash = hashEvent(unsigned);
      await sql`update audit_events set action = ${event.action}, upstream_method = ${event.upstream?.method ?? null},
        upstream_path = ${event.upstream?.path ?? null}, upstream_status = ${event.upstream?.status ?? null},
        prev_hash = ${prev}, hash = ${hash}
        where tenant_id = ${tenantId} and seq = ${event.seq}`.execute(db);
      event = { ...event, prev_hash: prev, hash };
    }
    prev = event.hash;
  }
  await sql`update audit_chain_heads set hash = ${prev} where tenant_id = ${tenantId}`.execute(db);
}
