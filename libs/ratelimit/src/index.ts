export {
  DEFAULT_BUDGET,
  DEFAULT_GRAPHQL_BUDGET,
  DEFAULT_R2_BUDGET,
  formatBudget,
  parseBudget,
} from './budget-spec.ts';
export type { BudgetSpec } from './budget-spec.ts';
export { parseRateHeaders } from './rate-headers.ts';
export type { CloudflareQuota } from './rate-headers.ts';
export {
  DEFAULT_BLOCK_SECONDS,
  UNSPECIFIED_429_BLOCK_SECONDS,
  blockSecondsOf,
  cloudflarePrincipal,
  cloudflareRateLimited,
  countedByCloudflare,
} from './cloudflare-limits.ts';
export type { CountedFacts, LimitedAnswer } from './cloudflare-limits.ts';
export type {
  BudgetKind,
  PrincipalWindows,
  WindowOptions,
  WindowRefusalReason,
  WindowSettlement,
  WindowStatus,
  WindowTake,
  WindowTicket,
} from './windows.ts';
export { createMemoryWindows } from './memory-windows.ts';
export type { MemoryWindowsOptions } from './memory-windows.ts';
export { createRedisWindows, windowKeys } from './redis-windows.ts';
export type { RedisWindowsOptions } from './redis-windows.ts';
export { BUDGET_REDIS_OPTIONS, DEFAULT_KEY_PREFIX, createBudgetRedisClient } from './redis-client.ts';
export { createEgressLimiter } from './egress.ts';
export type {
  EgressAcquire,
  EgressLimiter,
  EgressLimiterOptions,
  EgressSlot,
  EgressStore,
  EgressStoreOptions,
  EgressTake,
} from './egress.ts';
export { createMemoryEgressStore } from './memory-egress.ts';
export { createRedisEgressStore, egressKeys } from './redis-egress.ts';
export type { RedisEgressStoreOptions } from './redis-egress.ts';
export { createFallbackEgressStore, createFallbackWindows, createRedisBreaker } from './fallback.ts';
export type { RedisBreaker, RedisBreakerOptions } from './fallback.ts';
export { buildUpstreamBudget, createUpstreamBudget, rateLimitedError } from './upstream-budget.ts';
export type {
  AdmitRequest,
  Admitted,
  BudgetEvent,
  BudgetName,
  BudgetView,
  BuildUpstreamBudgetOptions,
  RefusalReason,
  Refusal,
  ReserveRequest,
  Reservation,
  UpstreamAnswer,
  UpstreamBudget,
  UpstreamBudgetOptions,
} from './upstream-budget.ts';
