/**
 * A connector stand-in for the cross-process budget test: one process, one Redis connection,
 * `takes` concurrent takes fired when the parent says go (so all processes race together).
 */
import { createBudgetRedisClient, createRedisRateBudget } from './redis-bucket.ts';
import type { BudgetSpec } from './rate-budget.ts';

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
    const budget = createRedisRateBudget({ redis, keyPrefix: job.keyPrefix, quitOnClose: true });
    // Loads the script without consuming, so the race below is all EVALSHA.
    await budget.peek(job.principal, job.spec);
    process.once('message', () => {
      void (async () => {
        const results = await Promise.allSettled(
          Array.from({ length: job.takes }, () => budget.take(job.principal, job.spec)),
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
        await budget.close();
        process.disconnect();
      })();
    });
    send({ type: 'ready' });
  })();
});
