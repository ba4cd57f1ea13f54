import type { Clock } from '@warden/core';
import { systemClock } from '@warden/core';
import { egressStoreOptions } from './egress.ts';
import type { EgressSlot, EgressStore, EgressStoreOptions, EgressTake } from './egress.ts';
import { SortedLog } from './sorted-log.ts';

/**
 * The egress window in this process only (no `REDIS_URL`, or the local fallback while Redis is
 * down): the TypeScript twin of `egress-scripts.ts`.
 */
export function createMemoryEgressStore(options: EgressStoreOptions & { clock?: Clock }): EgressStore {
  const { limit, windowMs, inFlightMs, waitingMs, slices } = egressStoreOptions(options);
  const sliceMs = windowMs / slices;
  const perSlice = Math.ceil(limit / slices);
  const clock = options.clock ?? systemClock;
  const log = new SortedLog();
  const tenantLogs = new Map<string, SortedLog>();
  /** Refused tenants' claims: until when, and their count in the window when they last asked. */
  const waiting = new Map<string, { until: number; count: number }>();
  let seq = 0;

  function tenantLog(tenantId: string): SortedLog {
    let t = tenantLogs.get(tenantId);
    if (!t) {
      t = new SortedLog();
      tenantLogs.set(tenantId, t);
    }
    return t;
  }

  function settleIn(target: SortedLog | undefined, id: string, nowMs: number): void {
    const score = target?.scoreOf(id);
    if (target && score !== undefined && score > nowMs) target.add(id, nowMs);
  }

  return {
    limit,
    windowMs,

    async take(tenantId: string, want: number): Promise<EgressTake> {
      const nowMs = clock.now().getTime();
      log.trim(nowMs - windowMs);
      const mine = tenantLog(tenantId);
      mine.trim(nowMs - windowMs);
      for (const [t, claim] of waiting) if (claim.until <= nowMs) waiting.delete(t);
      // Logs of tenants that went quiet go, so a process serving many tenants keeps few.
      for (const [t, other] of tenantLogs) {
        if (t === tenantId || waiting.has(t)) continue;
        other.trim(nowMs - windowMs);
        if (other.size === 0) tenantLogs.delete(t);
      }
      let least: { until: number; count: number } | undefined;
      for (const [t, claim] of waiting) {
        if (t !== tenantId && (!least || claim.count < least.count)) least = claim;
      }

      const granted: EgressSlot[] = [];
      let reason: EgressTake['reason'] = null;
      let recent = log.countAbove(nowMs - sliceMs);
      while (granted.length < want) {
        if (log.size >= limit || recent >= perSlice) {
          reason = 'full';
          break;
        }
        if (least && mine.size > least.count) {
          reason = 'share';
          break;
        }
        const id = String(++seq);
        log.add(id, nowMs + inFlightMs);
        mine.add(id, nowMs + inFlightMs);
        recent++;
        granted.push({ tenantId, id });
      }
      let waitMs = 0;
      if (reason === 'full' && log.size >= limit) {
        waitMs = log.scoreAt(log.size - limit)! + windowMs - nowMs;
      } else if (reason === 'full') {
        // The slice is full: until the request that filled it first leaves it.
        waitMs = Math.min(log.scoreAt(log.size - recent)! + sliceMs - nowMs, sliceMs);
      } else if (reason === 'share') {
        // Until this tenant's oldest request leaves the window, or the claim before it lapses.
        waitMs = Math.min(mine.scoreAt(0)! + windowMs - nowMs, least!.until - nowMs);
      }
      const claim = waiting.get(tenantId);
      if (reason !== null) waiting.set(tenantId, { until: nowMs + waitingMs, count: mine.size });
      // Granted: its claim keeps its time (other requests of it may still be waiting) with its count now.
      else if (claim) claim.count = mine.size;
      return { granted, reason, waitMs: Math.max(0, waitMs) };
    },

    async settle(slot: EgressSlot): Promise<void> {
      const nowMs = clock.now().getTime();
      settleIn(log, slot.id, nowMs);
      settleIn(tenantLogs.get(slot.tenantId), slot.id, nowMs);
    },

    async release(slot: EgressSlot): Promise<void> {
      log.remove(slot.id);
      tenantLogs.get(slot.tenantId)?.remove(slot.id);
    },

    async health(): Promise<void> {},

    async close(): Promise<void> {
      log.trim(Infinity);
      tenantLogs.clear();
      waiting.clear();
    },
  };
}
