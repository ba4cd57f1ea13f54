import type { AuditEvent } from './audit-event.ts';
import type { AuditSink } from './audit-sink.ts';
import { isSinkDeliveryError } from './sink-errors.ts';

const DEFAULT_BASE_MS = 1_000;
const DEFAULT_MAX_MS = 10 * 60_000;

export interface BackoffOptions {
  /** Delay around the first retry; default 1 s. */
  readonly baseMs?: number;
  /** Upper bound for any delay, `Retry-After` included; default 10 min. */
  readonly maxMs?: number;
  /** Uniform in [0, 1); injectable for tests. */
  readonly random?: () => number;
}

/**
 * Delay before the next try, after `attempt` failed tries (1, 2, 3, …): exponential from
 * `baseMs`, capped at `maxMs`, with "equal jitter" — a random point in the upper half of the
 * step. The jitter spreads the retries of many tenants after a shared receiver outage; keeping
 * half the step stops a lucky draw from hammering a receiver that is still down.
 */
export function nextAttemptDelayMs(attempt: number, options: BackoffOptions = {}): number {
  const baseMs = options.baseMs ?? DEFAULT_BASE_MS;
  const maxMs = options.maxMs ?? DEFAULT_MAX_MS;
  const random = options.random ?? Math.random;
  const exponent = Math.min(Math.max(attempt, 1) - 1, 30);
  const step = Math.min(maxMs, baseMs * 2 ** exponent);
  return Math.round(step / 2 + random() * (step / 2));
}

/** What a failed try leaves behind: safe to store on the outbox row and show through the API. */
export interface DeliveryFailure {
  readonly message: string;
  readonly retryable: boolean;
  readonly status: number | null;
}

export type DeliveryOutcome =
  | { readonly status: 'delivered'; readonly attempt: number }
  | {
      readonly status: 'retry';
      readonly attempt: number;
      readonly delayMs: number;
      readonly error: DeliveryFailure;
    }
  | { readonly status: 'failed'; readonly attempt: number; readonly error: DeliveryFailure };

export interface DeliveryAttempt {
  /** This try's number, starting at 1. */
  readonly attempt: number;
  /** After this many tries the batch is given up as failed. */
  readonly maxAttempts: number;
  readonly deliveryId?: string;
  readonly backoff?: BackoffOptions;
}

/**
 * One try of one batch, classified for the outbox worker: delivered (delete the row), retry
 * after `delayMs` (reschedule the job), or failed (keep the row, visible through the API).
 * Never throws. An error that is not a SinkDeliveryError is a bug in a sink; it is retried,
 * because losing audit events is worse than a duplicate, and its text is not exposed.
 */
export async function deliverBatch(
  sink: AuditSink,
  batch: readonly AuditEvent[],
  attempt: DeliveryAttempt,
): Promise<DeliveryOutcome> {
  try {
    await sink.send(batch, attempt.deliveryId === undefined ? {} : { deliveryId: attempt.deliveryId });
    return { status: 'delivered', attempt: attempt.attempt };
  } catch (error) {
    const known = isSinkDeliveryError(error);
    const failure: DeliveryFailure = known
      ? { message: error.message, retryable: error.retryable, status: error.status }
      : { message: `${sink.type} delivery failed: internal error`, retryable: true, status: null };
    if (!failure.retryable || attempt.attempt >= attempt.maxAttempts) {
      return { status: 'failed', attempt: attempt.attempt, error: failure };
    }
    const backoff = nextAttemptDelayMs(attempt.attempt, attempt.backoff);
    const retryAfter = known && error.retryAfterMs !== null ? error.retryAfterMs : 0;
    const maxMs = attempt.backoff?.maxMs ?? DEFAULT_MAX_MS;
    return {
      status: 'retry',
      attempt: attempt.attempt,
      delayMs: Math.min(Math.max(backoff, retryAfter), maxMs),
      error: failure,
    };
  }
}
