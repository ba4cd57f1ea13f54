/**
 * A dependency `/readyz` checks: throws when it cannot serve; resolves 'degraded' when
 * the service still works without it (e.g. the local rate-budget fallback).
 */
export interface ReadinessCheck {
  readonly name: string;
  check(): Promise<void | 'degraded'>;
}

/**
 * A check's failure whose message an operator can act on and that holds nothing secret (no
 * host names, no driver text): `/readyz` shows it under `problems`. Other failures show only as
 * `unavailable`.
 */
export class ReadinessProblem extends Error {
  override readonly name = 'ReadinessProblem';
}
