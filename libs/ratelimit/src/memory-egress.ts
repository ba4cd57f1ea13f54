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
  const { limit, windowMs, inFlightMs, activeMs, waitingMs } = egressStoreOptions(options);
  const clock = options.clock ?? systemClock;
  const log = new SortedLog();
  const tenantLogs = new Map<string, SortedLog>();
  const active = new Map<string, number>();
  const waiting = new Map<string, number>();
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
      active.set(tenantId, nowMs);
      for (const [t, at] of active) {
        if (at <= nowMs - activeMs) {
          active.delete(t);
          if (tenantLogs.get(t)?.size === 0) tenantLogs.delete(t);
        }
      }
      for (const [t, until] of waiting) if (until <= nowMs) waiting.delete(t);
      const share = Math.max(1, Math.floor(limit / active.size));
      const othersWaiting = waiting.size - (waiting.has(tenantId) ? 1 : 0);

      const granted: EgressSlot[] = [];
      let reason: EgressTake['reason'] = null;
      while (granted.length < want) {
        if (log.size >= limit) {
          reason = 'full';
          break;
        }
        if (mine.size >= share && othersWaiting > 0) {
          reason = 'share';
          break;
        }
        const id = String(++seq);
        log.add(id, nowMs + inFlightMs);
        mine.add(id, nowMs + inFlightMs);
        granted.push({ tenantId, id });
      }
      let waitMs = 0;
      if (reason === 'full') {
        waitMs = log.scoreAt(log.size - limit)! + windowMs - nowMs;
        if (mine.size < share) waiting.set(tenantId, nowMs + waitingMs);
      } else if (reason === 'share') {
        waitMs = mine.scoreAt(mine.size - share)! + windowMs - nowMs;
      } else {
        waiting.delete(tenantId);
      }
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
      active.clear();
      waiting.clear();
    },
  };
}
