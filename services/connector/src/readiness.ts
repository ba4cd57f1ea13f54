/**
 * A dependency `/readyz` checks: throws when it cannot serve; resolves 'degraded' when
 * the service still works without it (e.g. the local rate-budget fallback).
 */
export interface ReadinessCheck {
  readonly name: string;
  check(): Promise<void | 'degraded'>;
}
