/**
 * A connector stand-in for the cross-process window test: one process, one Redis connection,
 * `takes` concurrent takes fired when the parent says go (so all processes race together).
 */
import type { BudgetSpec } from './budget-spec.ts';
import { createBudgetRedisClient } from './redis-client.ts';
import { createRedisWindows } from './redis-windows.ts';

export interface BurstJob {
  readonly redisUrl: string;
  readonly keyPrefix: string;
  readonly principal: string;
  readonly spec: BudgetSpec;
  readonly takes: number;
}

export type BurstMessage =
  | { readonly type: 'ready' }
  | {
      readonly type: 'done';
      readonly allowed: number;
      readonly refusedWaits: number[];
      readonly errors: string[];
    };

function send(message: BurstMessage): void {
  process.send?.(message);
}

process.once('message', (job: BurstJob) => {
  void (async () => {
    // A generous timeout: this measures correctness under contention, not latency.
    const redis = createBudgetRedisClient(job.redisUrl, { lazyConnect: true, commandTimeout: 10_000 });
    await redis.connect();
    const windows = createRedisWindows({
      redis,
      keyPrefix: job.keyPrefix,
      quitOnClose: true,
      probeAfterMs: null,
    });
    // Loads the script without taking, so the race below is all EVALSHA.
    await windows.status(job.principal, 'rest', job.spec);
    process.once('message', () => {
      void (async () => {
        const results = await Promise.allSettled(
          Array.from({ length: job.takes }, () => windows.take(job.principal, 'rest', job.spec)),
        );
        let allowed = 0;
        const refusedWaits: number[] = [];
        const errors: string[] = [];
        for (const result of results) {
          if (result.status === 'rejected') errors.push(String(result.reason));
          else if (result.value.allowed) allowed++;
          else refusedWaits.push(result.value.retryAfterMs);
        }
        send({ type: 'done', allowed, refusedWaits, errors });
        await windows.close();
        process.disconnect();
      })();
    });
    send({ type: 'ready' });
  })();
});
