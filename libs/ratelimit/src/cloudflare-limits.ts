import { WardenError } from '@warden/core';

/**
 * Cloudflare's rate limiting as Warden models it, in one place: whom Cloudflare counts a request
 * against, which answers it counts, and how long its 429 blocks. The budget, the execution's
 * errors and the tail gateway read these; none keeps a rule of its own.
 */

/** How long an upstream 429 of the API-wide limit without a usable `Retry-After` blocks: Cloudflare's lockout lasts five minutes. */
export const DEFAULT_BLOCK_SECONDS = 300;

/** How long any other upstream 429 without a `Retry-After` blocks (see `blockSecondsOf`). */
export const UNSPECIFIED_429_BLOCK_SECONDS = 1;

/**
 * Cloudflare's error codes for its API-wide limit (1,200 requests per five minutes per user,
 * then every call refused for five minutes): 971 "Please wait and consider throttling your
 * request speed", and 10100 "More than 1200 requests per 300 seconds reached" in older answers.
 */
const API_WIDE_LIMIT_CODES: ReadonlySet<number> = new Set([971, 10100]);

/** Cloudflare's error code for a path it has no route for. */
const NO_ROUTE_CODE = 7000;

/** What a credential's verification learnt of it: enough to tell whom Cloudflare counts. */
export interface CountedFacts {
  readonly tokenKind: 'user' | 'account';
  readonly userId: string | null;
  readonly tokenId: string | null;
  readonly accounts: ReadonlyArray<{ readonly id: string }>;
}

/**
 * Whom Cloudflare counts a credential's requests against, as a budget principal: its user for
 * user tokens and Global API Keys (across all of that user's tokens and the dashboard), its
 * account for account-owned tokens. A user token that may not read its user (`GET /user`, User
 * Details Read) is counted per token, which is all Warden can tell of it. Null when the facts
 * name none of these.
 */
export function cloudflarePrincipal(facts: CountedFacts): string | null {
  if (facts.tokenKind === 'account') {
    const account = facts.accounts[0];
    return account ? `cf:account:${account.id}` : null;
  }
  if (facts.userId) return `cf:user:${facts.userId}`;
  return facts.tokenId ? `cf:token:${facts.tokenId}` : null;
}

/** A principal as refusals name it. */
export function whom(principal: string): string {
  if (principal.startsWith('cf:account:')) return 'this Cloudflare account';
  if (principal.startsWith('cf:user:')) return 'this Cloudflare user';
  return 'this credential';
}

/** The parts of an upstream answer Cloudflare's limits are read from (a `CloudflareResponse` has them). */
export interface LimitedAnswer {
  readonly status: number;
  readonly retryAfterSeconds: number | null;
  /** Cloudflare's error codes in the body, when it has any (a 429 of the API-wide limit says so). */
  readonly errors?: ReadonlyArray<{ readonly code?: number }>;
}

/**
 * Whether Cloudflare counted an answered request against its user's limit. It does not count the
 * requests it refused (429) nor those to a route it does not have (404, code 7000 "No route for
 * that URI"); an unknown id on a known route (404, code 7003) is counted.
 */
export function countedByCloudflare(answer: LimitedAnswer): boolean {
  if (answer.status === 429) return false;
  return !(answer.status === 404 && (answer.errors ?? []).some((e) => e.code === NO_ROUTE_CODE));
}

/**
 * How long a 429 blocks its principal, in seconds:
 * - its `Retry-After` (Cloudflare sends one with its REST limits);
 * - without one, Cloudflare's five-minute lockout (`DEFAULT_BLOCK_SECONDS`) when the answer is the
 *   API-wide limit's (its error code);
 * - otherwise `UNSPECIFIED_429_BLOCK_SECONDS`: a limit of the endpoint's own (Workers KV writes
 *   to one key, a purge rate) or GraphQL's, which says nothing of the user's other requests. A
 *   five-minute block there locked the user out of every request on every replica for one
 *   refused write, though Cloudflare would have taken the next one.
 */
export function blockSecondsOf(answer: LimitedAnswer): number {
  if (answer.retryAfterSeconds !== null) return answer.retryAfterSeconds;
  const apiWide = (answer.errors ?? []).some((e) => e.code !== undefined && API_WIDE_LIMIT_CODES.has(e.code));
  return apiWide ? DEFAULT_BLOCK_SECONDS : UNSPECIFIED_429_BLOCK_SECONDS;
}

/**
 * The error agent code gets for Cloudflare's 429, `what` naming the call that got it: the wait it
 * names is as long as the budget blocks the principal for that answer, so a retry after it goes.
 */
export function cloudflareRateLimited(answer: LimitedAnswer, what: string | null = null): WardenError {
  const wait = blockSecondsOf(answer);
  return new WardenError(
    'rate_limited',
    `${what ? `${what}: ` : ''}Cloudflare rate-limited this user; retry after ${wait} s`,
    { retryAfterSeconds: wait },
  );
}
