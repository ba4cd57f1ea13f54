import type { AuditEvent } from './audit-event.ts';
import type { AuditRecordInput, AuditStore } from './audit.store.ts';

/** How long a record handed to `later` may wait for the operation's next write to carry it. */
export const LATER_MAX_WAIT_MS = 50;

/**
 * The audit records of one operation (a tool call, an offboarding, a verification) for one
 * tenant. `commit` is for records that must be durable before the operation goes on (the
 * intent of an upstream request); `later` is for records the operation need not wait for (an
 * outcome): they ride with the operation's next write (the next intent, or `flush`), or are
 * written on their own after `LATER_MAX_WAIT_MS`, so a call with one upstream request costs
 * two round trips, not three. `flush` writes whatever is left with the operation's last records
 * and resolves once everything is committed. Appends go through the store's per-tenant queue,
 * so records are committed in the order they were handed over.
 */
export class AuditJournal {
  readonly #store: AuditStore;
  readonly #tenantId: string;
  readonly #retentionDays: number;
  readonly #inFlight = new Set<Promise<void>>();
  /** Handed to `later`, not yet sent to the store. */
  #held: AuditRecordInput[] = [];
  #timer: NodeJS.Timeout | undefined;
  #failed: AuditRecordInput[] = [];

  constructor(store: AuditStore, tenantId: string, retentionDays: number) {
    this.#store = store;
    this.#tenantId = tenantId;
    this.#retentionDays = retentionDays;
  }

  /** The held records, taken out (in order), to ride with another write. */
  #takeHeld(): AuditRecordInput[] {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const held = this.#held;
    this.#held = [];
    return held;
  }

  #append(records: readonly AuditRecordInput[]): Promise<AuditEvent[]> {
    return this.#store.append(this.#tenantId, records, { retentionDays: this.#retentionDays });
  }

  get tenantId(): string {
    return this.#tenantId;
  }

  /**
   * Appends (with any held records, first) and waits for the commit; resolves to the events of
   * `records` only. Throws `unavailable` if the store cannot take it; held records then stay
   * held for `flush`.
   */
  async commit(records: readonly AuditRecordInput[]): Promise<AuditEvent[]> {
    const held = this.#takeHeld();
    try {
      const events = await this.#append([...held, ...records]);
      return events.slice(held.length);
    } catch (error) {
      this.#failed.push(...held);
      throw error;
    }
  }

  /** Records to write without waiting; one that could not be written is kept for `flush`. */
  later(records: readonly AuditRecordInput[]): void {
    this.#held.push(...records);
    this.#timer ??= setTimeout(() => this.#writeHeld(), LATER_MAX_WAIT_MS);
  }

  #writeHeld(): void {
    const records = this.#takeHeld();
    if (records.length === 0) return;
    const write = this.#append(records).then(
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
    const held = this.#takeHeld();
    await Promise.all([...this.#inFlight]);
    const pending = [...this.#failed, ...held, ...records];
    this.#failed = [];
    if (pending.length === 0) return [];
    try {
      return await this.#append(pending);
    } catch (error) {
      this.#failed = pending;
      throw error;
    }
  }
}
