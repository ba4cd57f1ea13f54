import { createHmac, timingSafeEqual } from 'node:crypto';
import { systemClock } from '@warden/core';
import type { AuditEvent } from './audit-event.ts';
import { DEFAULT_SINK_TIMEOUT_MS, batchDeliveryId } from './audit-sink.ts';
import type { AuditSink, DeliveryContext, SinkRuntimeOptions } from './audit-sink.ts';
import { withCodeCapped } from './format-common.ts';
import { createHttpPoster } from './http-post.ts';
import { parseSinkConfig } from './sink-config.ts';
import type { WebhookSinkConfig } from './sink-config.ts';
import { httpFailure, networkFailure } from './sink-errors.ts';

export const WEBHOOK_SIGNATURE_HEADER = 'x-warden-signature';
export const WEBHOOK_DELIVERY_ID_HEADER = 'x-warden-delivery-id';

/** Receivers reject signatures older than this by default (replay window). */
export const DEFAULT_SIGNATURE_TOLERANCE_SECONDS = 300;

function hmac(secret: string, timestamp: string, body: string | Uint8Array): Buffer {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest();
}

/**
 * The `x-warden-signature` value for `body`: `t=<unix seconds>,v1=<hex HMAC-SHA256>` over the
 * string `"<t>.<body>"`, keyed with the sink's secret (the scheme Stripe uses). Signing the
 * timestamp with the body lets receivers refuse replays of an old delivery.
 */
export function signWebhookPayload(secret: string, body: string, timestampSeconds: number): string {
  const t = String(Math.floor(timestampSeconds));
  return `t=${t},v1=${hmac(secret, t, body).toString('hex')}`;
}

/**
 * For receivers: true when `header` carries a v1 signature of the raw `body` bytes under
 * `secret`, made no more than `toleranceSeconds` from `now`. Pass the body exactly as
 * received; a re-serialized JSON object will not verify. Several `v1=` entries are accepted,
 * so a sender may sign with an old and a new secret during rotation.
 */
export function verifyWebhookSignature(
  secret: string,
  header: string | undefined | null,
  body: string | Uint8Array,
  toleranceSeconds: number = DEFAULT_SIGNATURE_TOLERANCE_SECONDS,
  now: Date = new Date(),
): boolean {
  if (!header) return false;
  let timestamp: string | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') timestamp = value;
    else if (key === 'v1') signatures.push(value);
  }
  if (timestamp === undefined || !/^\d{1,12}$/.test(timestamp)) return false;
  if (Math.abs(now.getTime() / 1000 - Number(timestamp)) > toleranceSeconds) return false;
  const expected = hmac(secret, timestamp, body);
  return signatures.some(
    (signature) =>
      /^[0-9a-f]{64}$/i.test(signature) && timingSafeEqual(Buffer.from(signature, 'hex'), expected),
  );
}

/**
 * POSTs `{"events":[...]}` (events as the audit API returns them) with a signature and a
 * delivery id. 2xx is delivered; 408/429/5xx and network failures are retryable; any other
 * answer is not.
 */
export function createWebhookSink(config: WebhookSinkConfig, options: SinkRuntimeOptions = {}): AuditSink {
  const valid = parseSinkConfig(config, options) as WebhookSinkConfig;
  const clock = options.clock ?? systemClock;
  const poster = createHttpPoster(new URL(valid.url), {
    timeoutMs: options.timeoutMs ?? DEFAULT_SINK_TIMEOUT_MS,
    allowPrivateNetwork: options.allowPrivateNetwork === true,
  });

  async function send(batch: readonly AuditEvent[], context: DeliveryContext = {}): Promise<void> {
    if (batch.length === 0) return;
    const body = JSON.stringify({
      events: batch.map((event) => withCodeCapped(event, options.maxCodeChars)),
    });
    const now = clock.now();
    const response = await poster
      .post(body, {
        'content-type': 'application/json',
        'user-agent': 'Warden-Webhook/1',
        [WEBHOOK_SIGNATURE_HEADER]: signWebhookPayload(valid.secret, body, now.getTime() / 1000),
        [WEBHOOK_DELIVERY_ID_HEADER]: context.deliveryId ?? batchDeliveryId(batch),
      })
      .catch((error: unknown) => {
        throw networkFailure('webhook', error);
      });
    if (response.status >= 200 && response.status < 300) return;
    throw httpFailure(
      'webhook',
      { status: response.status, body: response.body, retryAfter: response.headers['retry-after'] },
      [valid.secret],
      clock.now(),
    );
  }

  return {
    type: 'webhook',
    send,
    close: async () => poster.close(),
  };
}
