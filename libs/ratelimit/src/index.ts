export { MAX_BLOCK_SECONDS, cloudflarePrincipal, rateLimitedError } from './rate-budget.ts';
export type { BudgetPeek, BudgetSpec, RateBudget, TakeRefusal, TakeResult } from './rate-budget.ts';
export { DEFAULT_BUDGET, formatBudget, parseBudget } from './budget-spec.ts';
export { createMemoryRateBudget } from './memory-bucket.ts';
export type { MemoryRateBudgetOptions } from './memory-bucket.ts';
export {
  BUDGET_REDIS_OPTIONS,
  DEFAULT_KEY_PREFIX,
  budgetKeys,
  createBudgetRedisClient,
  createRedisRateBudget,
} from './redis-bucket.ts';
export type { RedisRateBudgetOptions } from './redis-bucket.ts';
export { createFallbackRateBudget } from './fallback-bucket.ts';
export type { FallbackRateBudget, FallbackRateBudgetOptions } from './fallback-bucket.ts';
