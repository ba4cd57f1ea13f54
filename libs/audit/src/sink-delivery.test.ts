import { describe, expect, it } from 'vitest';
import type { AuditSink } from './audit-sink.ts';
import { deliverBatch, nextAttemptDelayMs } from './sink-delivery.ts';
import { SinkDeliveryError } from './sink-errors.ts';
import { toolCallEvent } from './test-support/audit-event-fixtures.ts';

function failingSink(error: unknown): AuditSink {
  return {
    type: 'webhook',
    send: async () => {
      throw error;
    },
    close: async () => {},
  };
}

describe('backoff', () => {
  it('doubles from the base, stays in the upper half of each step and respects the cap', () => {
    const low = { baseMs: 1_000, maxMs: 60_000, random: () => 0 };
    const high = { ...low, random: () => 0.999_999 };
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => nextAttemptDelayMs(n, low))).toEqual([
      500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000,
    ]);
    expect([1, 2, 3, 7, 100].map((n) => nextAttemptDelayMs(n, high))).toEqual([
      1_000, 2_000, 4_000, 60_000, 60_000,
    ]);
  });

  it('jitters between the bounds with the default random source', () => {
    const delays = Array.from({ length: 200 }, () => nextAttemptDelayMs(3));
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(2_000);
    expect(Math.max(...delays)).toBeLessThanOrEqual(4_000);
    expect(new Set(delays).size).toBeGreaterThan(1);
    expect(nextAttemptDelayMs(0, { random: () => 0 })).toBe(500);
  });
});

describe('deliverBatch', () => {
  const batch = [toolCallEvent()];

  it('passes the delivery id to the sink', async () => {
    const seen: unknown[] = [];
    const sink: AuditSink = {
      type: 'syslog',
      send: async (events, context) => {
        seen.push(events, context);
      },
      close: async () => {},
    };
    expect(await deliverBatch(sink, batch, { attempt: 2, maxAttempts: 3, deliveryId: 'dlv_x' })).toEqual({
      status: 'delivered',
      attempt: 2,
    });
    expect(seen).toEqual([batch, { deliveryId: 'dlv_x' }]);
  });

  it('waits at least as long as Retry-After asks, within the cap', async () => {
    const throttled = failingSink(
      new SinkDeliveryError('slow down', { retryable: true, status: 429, retryAfterMs: 9_000 }),
    );
    const backoff = { baseMs: 100, maxMs: 5_000, random: () => 0 };
    expect(await deliverBatch(throttled, batch, { attempt: 1, maxAttempts: 3, backoff })).toMatchObject({
      status: 'retry',
      delayMs: 5_000,
    });
    const polite = failingSink(
      new SinkDeliveryError('slow down', { retryable: true, status: 429, retryAfterMs: 700 }),
    );
    expect(await deliverBatch(polite, batch, { attempt: 1, maxAttempts: 3, backoff })).toMatchObject({
      delayMs: 700,
    });
  });

  it('retries an unexpected error without exposing its text', async () => {
    const outcome = await deliverBatch(failingSink(new TypeError('secret=hunter2 exploded')), batch, {
      attempt: 1,
      maxAttempts: 2,
    });
    expect(outcome).toMatchObject({
      status: 'retry',
      error: { message: 'webhook delivery failed: internal error', retryable: true, status: null },
    });
  });
});
