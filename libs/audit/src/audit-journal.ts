import type { AuditEvent } from './audit-event.ts';
import type { AuditRecordInput, AuditStore } from './audit.store.ts';

/**
 * The audit records of one operation (a tool call, an offboarding, a verification) for one
 * tenant. `commit` is for records that must be durable before the operation goes on (the
 * intent of an upstream request); `later` queues records whose write the operation need not
 * wait for (an outcome), keeping any that fail; `flush` writes those again with the
 * operation's last records and resolves once everything is committed. Appends go through the
 * store's per-tenant queue, so records are committed in the order they were handed over.
 */
export class AuditJournal {
  readonly #store: AuditStore;
  readonly #tenantId: string;
  readonly #retentionDays: number;
  readonly #inFlight = new Set<Promise<void>>();
  #failed: AuditRecordInput[] = [];

  constructor(store: AuditStore, tenantId: string, retentionDays: number) {
    this.#store = store;
    this.#tenantId = tenantId;
    this.#retentionDays = retentionDays;
  }

  get tenantId(): string {
    return this.#tenantId;
  }

  /** Appends and waits for the commit; throws `unavailable` if the store cannot take it. */
  commit(records: readonly AuditRecordInput[]): Promise<AuditEvent[]> {
    return this.#store.append(this.#tenantId, records, { retentionDays: this.#retentionDays });
  }

  /** Appends without waiting; a record that could not be written is kept for `flush`. */
  later(records: readonly AuditRecordInput[]): void {
    const write = this.commit(records).then(
      () => undefined,
      () => {
        this.#failed.push(...records);
      },
    );
    this.#inFlight.add(write);
    void write.finally(() => this.#inFlight.delete(write));
  }

  /** Waits for queued records, writes any that failed with `records`, and resolves when all are committed. */
  async flush(records: readonly AuditRecordInput[] = []): Promise<AuditEvent[]> {
    await Promise.all([...this.#inFlight]);
    const pending = [...this.#failed, ...records];
    this.#failed = [];
    if (pending.length === 0) return [];
    try {
      return await this.commit(pending);
    } catch (error) {
      this.#failed = pending;
      throw error;
    }
  }
}
