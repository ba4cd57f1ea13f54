import { WardenError } from '@warden/core';

/**
 * A window budget: never more than `capacity` requests in any `windowSeconds` (a sliding window,
 * not a bucket: nothing refills early).
 */
export interface BudgetSpec {
  readonly capacity: number;
  readonly windowSeconds: number;
}

/** Cloudflare's documented limit: 1,200 requests per 5 minutes per user. */
export const DEFAULT_BUDGET: BudgetSpec = Object.freeze({ capacity: 1200, windowSeconds: 300 });

/** Cloudflare's GraphQL limit: at most 320 queries per 5 minutes (it also weighs query cost). */
export const DEFAULT_GRAPHQL_BUDGET: BudgetSpec = Object.freeze({ capacity: 320, windowSeconds: 300 });

/**
 * Warden's own budget for R2 object requests per principal (R2's S3 endpoint publishes no
 * per-user quota like the API's; this keeps one agent from flooding a bucket).
 */
export const DEFAULT_R2_BUDGET: BudgetSpec = Object.freeze({ capacity: 1200, windowSeconds: 300 });

const MAX_CAPACITY = 1_000_000;
const MAX_WINDOW_SECONDS = 31 * 24 * 3600;

/**
 * Parses `"<requests>/<seconds>"` (the `CLOUDFLARE_BUDGET` format, also used for per-tenant
 * overrides). `field` names the setting in the error, so operators see which value is wrong.
 */
export function parseBudget(value: string, field = 'CLOUDFLARE_BUDGET'): BudgetSpec {
  const shown = JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
  const fail = (why: string) =>
    new WardenError('invalid_request', `${field}: ${why}, got ${shown}`, { field });
  const match = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(value);
  if (!match) throw fail('expected "<requests>/<seconds>" such as "1200/300"');
  const capacity = Number(match[1]);
  const windowSeconds = Number(match[2]);
  // The window keeps one entry per request, so the capacity bounds its memory too.
  if (capacity < 1 || capacity > MAX_CAPACITY) {
    throw fail(`requests must be from 1 to ${MAX_CAPACITY}`);
  }
  if (windowSeconds < 1 || windowSeconds > MAX_WINDOW_SECONDS) {
    throw fail(`seconds must be from 1 to ${MAX_WINDOW_SECONDS}`);
  }
  return { capacity, windowSeconds };
}

/** `"1200/300"`, for logs and the connected account's view. */
export function formatBudget(spec: BudgetSpec): string {
  return `${spec.capacity}/${spec.windowSeconds}`;
}
