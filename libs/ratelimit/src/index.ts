export { MAX_BLOCK_SECONDS, cloudflarePrincipal, rateLimitedError } from './rate-budget.ts';
export type { BudgetPeek, BudgetSpec, RateBudget, TakeRefusal, TakeResult } from './rate-budget.ts';
export { DEFAULT_BUDGET, formatBudget, parseBudget } from './budget-spec.ts';
export { createMemoryRateBudget } from './memory-bucket.ts';
export type { MemoryRateBudgetOptions } from './memory-bucket.ts';
