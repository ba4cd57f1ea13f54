import type { AuditCaller, AuditRecordInput } from '@warden/audit';
import type { Database } from '@warden/db';
import type { Kysely } from 'kysely';

/** Who makes a change, and in which tenant: every lifecycle record names its actor. */
export interface ActorContext {
  readonly tenantId: string;
  readonly actor: AuditCaller;
}

/**
 * Appends lifecycle records to a tenant's audit trail inside the transaction of the change they
 * describe, so the change and its record commit together or not at all.
 */
export type LifecycleAudit = (
  tx: Kysely<Database>,
  tenantId: string,
  records: readonly AuditRecordInput[],
) => Promise<void>;
