import { createHash } from 'node:crypto';
import type { Clock } from '@warden/core';
import type { AuditEvent } from './audit-event.ts';
import type { SinkType, SinkValidationOptions } from './sink-config.ts';

export interface DeliveryContext {
  /**
   * Identifies the delivery across retries (the outbox row id, `dlv_…`). Receivers may use it
   * to drop a batch they already have; each event's `id` de-duplicates at the finer grain.
   */
  readonly deliveryId?: string;
}

/** One tenant's SIEM destination. `send` resolves once the receiver has the whole batch. */
export interface AuditSink {
  readonly type: SinkType;
  /** Throws SinkDeliveryError; `retryable` says whether sending the same batch again may work. */
  send(batch: readonly AuditEvent[], context?: DeliveryContext): Promise<void>;
  /** Releases connections; the sink cannot be used afterwards. */
  close(): Promise<void>;
}

export interface SinkRuntimeOptions extends Omit<SinkValidationOptions, 'fieldPrefix'> {
  /** Per request (HTTP) or per connect and per batch write (syslog); default 10 s. */
  readonly timeoutMs?: number;
  /** This Warden's host name: HEC `host` and the syslog HOSTNAME; default `os.hostname()`. */
  readonly hostname?: string;
  readonly clock?: Clock;
  /** Warden's release, for CEF headers. */
  readonly productVersion?: string;
  /** Cap on each event's `code` (see FormatOptions); each sink has a default that fits its receivers. */
  readonly maxCodeChars?: number;
}

export const DEFAULT_SINK_TIMEOUT_MS = 10_000;

/**
 * Without an outbox id, the same batch still gets the same delivery id on every retry,
 * because it is derived from the event ids.
 */
export function batchDeliveryId(batch: readonly AuditEvent[]): string {
  const digest = createHash('sha256')
    .update(batch.map((event) => event.id).join('\n'))
    .digest('hex');
  return `dlv_${digest.slice(0, 20)}`;
}
