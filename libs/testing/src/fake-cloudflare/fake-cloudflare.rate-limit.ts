import { serializeList } from 'structured-headers';

export interface FakeBudget {
  readonly requests: number;
  readonly windowSeconds: number;
}

/** Cloudflare's documented limits (developers.cloudflare.com, fundamentals/api/reference/limits). */
export const DEFAULT_FAKE_BUDGET: FakeBudget = { requests: 1200, windowSeconds: 300 };
export const DEFAULT_FAKE_GRAPHQL_BUDGET: FakeBudget = { requests: 320, windowSeconds: 300 };
export const DEFAULT_FAKE_IP_LIMIT = 200;
/** "If you exceed this limit, all API calls for the next five minutes will be blocked." */
export const DEFAULT_FAKE_LOCKOUT_SECONDS = 300;

/** Every limit of the fake; null turns one off. */
export interface FakeLimits {
  /** REST requests per user (all of its tokens and its Global API Key; per account for account-owned tokens). */
  readonly budget: FakeBudget | null;
  /** GraphQL queries per user, counted apart from REST. */
  readonly graphql: FakeBudget | null;
  /** Requests per second per client IP, every user together. */
  readonly perIpPerSecond: number | null;
  /** How long exceeding `budget` blocks every call of that user (REST and GraphQL). */
  readonly lockoutSeconds: number;
}

interface Window {
  /** Accepted request times (ms), a ring of at most `requests` entries. */
  readonly times: number[];
  head: number;
}

export interface FakeWindowState {
  readonly remaining: number;
  /** Seconds until the window is empty again (nothing left counted), rounded up. */
  readonly resetSeconds: number;
}

/**
 * "At most N requests in any W seconds" per key: a ring of the last N accepted request times.
 * A request is accepted when fewer than N were accepted in the window, i.e. when the oldest of
 * the last N is at least W old. Refused requests are not recorded. O(1) per take.
 */
export class SlidingWindowLimiter {
  #budget: FakeBudget | null;
  readonly #windows = new Map<string, Window>();

  constructor(budget: FakeBudget | null) {
    if (budget) assertBudget(budget);
    this.#budget = budget;
  }

  get budget(): FakeBudget | null {
    return this.#budget;
  }

  setBudget(budget: FakeBudget | null): void {
    if (budget) assertBudget(budget);
    this.#budget = budget;
    this.#windows.clear();
  }

  reset(): void {
    this.#windows.clear();
  }

  /** Records the request and returns null, or returns the seconds until more capacity (the `Retry-After`). */
  take(key: string, nowMs: number): number | null {
    const budget = this.#budget;
    if (!budget) return null;
    let window = this.#windows.get(key);
    if (!window) {
      window = { times: [], head: 0 };
      this.#windows.set(key, window);
    }
    if (window.times.length < budget.requests) {
      window.times.push(nowMs);
      return null;
    }
    const windowMs = budget.windowSeconds * 1000;
    const oldest = window.times[window.head]!;
    if (nowMs - oldest >= windowMs) {
      window.times[window.head] = nowMs;
      window.head = (window.head + 1) % budget.requests;
      return null;
    }
    return Math.max(1, Math.ceil((oldest + windowMs - nowMs) / 1000));
  }

  /** What the `Ratelimit` header reports for `key`. */
  state(key: string, nowMs: number): FakeWindowState | null {
    const budget = this.#budget;
    if (!budget) return null;
    const windowMs = budget.windowSeconds * 1000;
    let used = 0;
    let newest = -Infinity;
    for (const t of this.#windows.get(key)?.times ?? []) {
      if (nowMs - t < windowMs) {
        used++;
        newest = Math.max(newest, t);
      }
    }
    return {
      remaining: budget.requests - used,
      resetSeconds: used === 0 ? 0 : Math.max(1, Math.ceil((newest + windowMs - nowMs) / 1000)),
    };
  }
}

function assertBudget(budget: FakeBudget): void {
  if (!Number.isInteger(budget.requests) || budget.requests < 1) {
    throw new Error('fake Cloudflare: budget.requests must be a positive integer');
  }
  if (!(budget.windowSeconds > 0)) throw new Error('fake Cloudflare: budget.windowSeconds must be positive');
}

export type LimitedBy = 'ip' | 'budget' | 'graphql' | 'lockout';

export type LimitDecision =
  | { readonly ok: true; readonly headers: Readonly<Record<string, string>> }
  | {
      readonly ok: false;
      readonly limitedBy: LimitedBy;
      readonly retryAfterSeconds: number;
      readonly headers: Readonly<Record<string, string>>;
    };

function rateHeaders(name: string, budget: FakeBudget, state: FakeWindowState): Record<string, string> {
  return {
    ratelimit: serializeList([
      [
        name,
        new Map([
          ['r', state.remaining],
          ['t', state.resetSeconds],
        ]),
      ],
    ]),
    'ratelimit-policy': serializeList([
      [
        name,
        new Map([
          ['q', budget.requests],
          ['w', budget.windowSeconds],
        ]),
      ],
    ]),
  };
}

/**
 * Cloudflare's limits as the fake enforces them: the per-user window (REST) with its lockout, the
 * separate GraphQL window, and the per-IP per-second limit, with the headers Cloudflare sends:
 * `Ratelimit` and `Ratelimit-Policy` on every authenticated response, `Retry-After` on a 429.
 */
export class FakeRateLimits {
  readonly #rest: SlidingWindowLimiter;
  readonly #graphql: SlidingWindowLimiter;
  readonly #ip: SlidingWindowLimiter;
  readonly #lockouts = new Map<string, number>();
  #lockoutSeconds: number;

  constructor(limits: FakeLimits) {
    this.#rest = new SlidingWindowLimiter(limits.budget);
    this.#graphql = new SlidingWindowLimiter(limits.graphql);
    this.#ip = new SlidingWindowLimiter(ipBudget(limits.perIpPerSecond));
    this.#lockoutSeconds = lockout(limits.lockoutSeconds);
  }

  limits(): FakeLimits {
    return {
      budget: this.#rest.budget,
      graphql: this.#graphql.budget,
      perIpPerSecond: this.#ip.budget?.requests ?? null,
      lockoutSeconds: this.#lockoutSeconds,
    };
  }

  /** Changes some limits and starts every window and lockout afresh. */
  set(limits: Partial<FakeLimits>): void {
    if (limits.budget !== undefined) this.#rest.setBudget(limits.budget);
    if (limits.graphql !== undefined) this.#graphql.setBudget(limits.graphql);
    if (limits.perIpPerSecond !== undefined) this.#ip.setBudget(ipBudget(limits.perIpPerSecond));
    if (limits.lockoutSeconds !== undefined) this.#lockoutSeconds = lockout(limits.lockoutSeconds);
    this.reset();
  }

  reset(): void {
    this.#rest.reset();
    this.#graphql.reset();
    this.#ip.reset();
    this.#lockouts.clear();
  }

  /** What the `Ratelimit` header would say for a principal now (null when that limit is off). */
  quota(principalKey: string, kind: 'rest' | 'graphql', nowMs: number): FakeWindowState | null {
    return (kind === 'graphql' ? this.#graphql : this.#rest).state(principalKey, nowMs);
  }

  /** The per-IP limit, before anything else: it applies to every request from the address. */
  takeIp(ip: string, nowMs: number): LimitDecision {
    const wait = this.#ip.take(ip, nowMs);
    return wait === null
      ? { ok: true, headers: {} }
      : { ok: false, limitedBy: 'ip', retryAfterSeconds: wait, headers: {} };
  }

  /** The user's (or account's) window for this kind of request, and its lockout. */
  take(principalKey: string, kind: 'rest' | 'graphql', nowMs: number): LimitDecision {
    const limiter = kind === 'graphql' ? this.#graphql : this.#rest;
    const name = kind === 'graphql' ? 'graphql' : 'default';
    const lockedUntil = this.#lockouts.get(principalKey) ?? 0;
    if (lockedUntil > nowMs) {
      const wait = Math.max(1, Math.ceil((lockedUntil - nowMs) / 1000));
      return {
        ok: false,
        limitedBy: 'lockout',
        retryAfterSeconds: wait,
        headers: limiter.budget
          ? rateHeaders(name, limiter.budget, { remaining: 0, resetSeconds: wait })
          : {},
      };
    }
    const wait = limiter.take(principalKey, nowMs);
    const budget = limiter.budget;
    if (!budget) return { ok: true, headers: {} };
    if (wait === null)
      return { ok: true, headers: rateHeaders(name, budget, limiter.state(principalKey, nowMs)!) };
    if (kind === 'graphql') {
      return {
        ok: false,
        limitedBy: 'graphql',
        retryAfterSeconds: wait,
        headers: rateHeaders(name, budget, limiter.state(principalKey, nowMs)!),
      };
    }
    // Exceeding the user's budget locks the user out (dashboard included) for the lockout time.
    const until = nowMs + this.#lockoutSeconds * 1000;
    this.#lockouts.set(principalKey, until);
    const lockoutWait = Math.max(wait, Math.ceil(this.#lockoutSeconds));
    return {
      ok: false,
      limitedBy: 'budget',
      retryAfterSeconds: lockoutWait,
      headers: rateHeaders(name, budget, { remaining: 0, resetSeconds: lockoutWait }),
    };
  }
}

function ipBudget(perSecond: number | null): FakeBudget | null {
  return perSecond === null ? null : { requests: perSecond, windowSeconds: 1 };
}

function lockout(seconds: number): number {
  if (!(seconds >= 0)) throw new Error('fake Cloudflare: lockoutSeconds must be zero or more');
  return seconds;
}
