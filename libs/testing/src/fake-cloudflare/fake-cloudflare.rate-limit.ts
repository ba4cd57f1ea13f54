export interface FakeBudget {
  readonly requests: number;
  readonly windowSeconds: number;
}

export const DEFAULT_FAKE_BUDGET: FakeBudget = { requests: 1200, windowSeconds: 300 };

interface Window {
  /** Accepted request times (ms), a ring of at most `requests` entries. */
  readonly times: number[];
  head: number;
}

/**
 * "At most N requests in any W seconds" per key: a ring of the last N accepted request times.
 * A request is accepted when fewer than N were accepted in the window, i.e. when the oldest of
 * the last N is at least W old. Refused requests are not recorded, so traffic recovers exactly
 * one window after the burst that exhausted the budget. O(1) per request.
 */
export class SlidingWindowLimiter {
  #budget: FakeBudget | null;
  readonly #windows = new Map<string, Window>();

  constructor(budget: FakeBudget | null) {
    this.#budget = budget;
    if (budget) assertBudget(budget);
  }

  setBudget(budget: FakeBudget | null): void {
    if (budget) assertBudget(budget);
    this.#budget = budget;
    this.#windows.clear();
  }

  reset(): void {
    this.#windows.clear();
  }

  /** Records the request and returns null, or returns the seconds to wait (the `Retry-After`). */
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
}

function assertBudget(budget: FakeBudget): void {
  if (!Number.isInteger(budget.requests) || budget.requests < 1) {
    throw new Error('fake Cloudflare: budget.requests must be a positive integer');
  }
  if (!(budget.windowSeconds > 0)) throw new Error('fake Cloudflare: budget.windowSeconds must be positive');
}
