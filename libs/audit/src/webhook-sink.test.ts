import { setTimeout as sleep } from 'node:timers/promises';
import { ManualClock } from '@warden/core';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from './audit-event.ts';
import type { AuditSink } from './audit-sink.ts';
import { deliverBatch } from './sink-delivery.ts';
import { eventSeries, toolCallEvent } from './test-support/audit-event-fixtures.ts';
import { startReceiver } from './test-support/http-receiver.ts';
import type { Receiver, ReceiverAnswer } from './test-support/http-receiver.ts';
import { createWebhookSink, signWebhookPayload, verifyWebhookSignature } from './webhook-sink.ts';

const SECRET = `whsec_${'k'.repeat(32)}`;
const LOCAL = { allowInsecureHttp: true, allowPrivateNetwork: true } as const;

const open: Array<Receiver | AuditSink> = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((item) => item.close()));
});

async function receiver(...args: Parameters<typeof startReceiver>): Promise<Receiver> {
  const started = await startReceiver(...args);
  open.push(started);
  return started;
}

function sink(url: string, options: Parameters<typeof createWebhookSink>[1] = LOCAL): AuditSink {
  const created = createWebhookSink({ type: 'webhook', url, secret: SECRET }, options);
  open.push(created);
  return created;
}

function batches<T>(items: readonly T[], size: number): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, i) =>
    items.slice(i * size, (i + 1) * size),
  );
}

/** What the outbox worker will do: try, wait the advised delay, try again. */
async function deliverUntilDone(
  target: AuditSink,
  batch: readonly AuditEvent[],
  deliveryId: string,
): Promise<number> {
  for (let attempt = 1; ; attempt += 1) {
    const outcome = await deliverBatch(target, batch, {
      attempt,
      maxAttempts: 20,
      deliveryId,
      backoff: { baseMs: 2, maxMs: 20 },
    });
    if (outcome.status === 'delivered') return attempt;
    if (outcome.status === 'failed') throw new Error(`delivery failed: ${outcome.error.message}`);
    await sleep(outcome.delayMs);
  }
}

describe('webhook sink', () => {
  it('gets every event to a receiver that fails, then recovers, at least once', async () => {
    let calls = 0;
    const seen = new Map<string, number>();
    const deliveries = new Map<string, number>();
    const target = await receiver((request) => {
      calls += 1;
      expect(request.method).toBe('POST');
      expect(request.headers['content-type']).toBe('application/json');
      expect(
        verifyWebhookSignature(SECRET, request.headers['x-warden-signature'] as string, request.body),
      ).toBe(true);
      const deliveryId = request.headers['x-warden-delivery-id'] as string;
      deliveries.set(deliveryId, (deliveries.get(deliveryId) ?? 0) + 1);
      // Calls 3 and 4 store the events but the answer is lost: the sender must retry anyway.
      if (calls >= 3 && calls <= 4) {
        for (const event of JSON.parse(request.body).events)
          seen.set(event.id, (seen.get(event.id) ?? 0) + 1);
      }
      if (calls <= 4) return { status: 500, body: 'down for maintenance' };
      for (const event of JSON.parse(request.body).events) seen.set(event.id, (seen.get(event.id) ?? 0) + 1);
      return { status: 204 };
    });
    const events = eventSeries(25);
    const webhook = sink(`${target.url}/hooks/warden`);
    const attempts: number[] = [];
    for (const [index, batch] of batches(events, 10).entries()) {
      attempts.push(await deliverUntilDone(webhook, batch, `dlv_batch${index}`));
    }
    expect(attempts).toEqual([5, 1, 1]);
    expect([...seen.keys()].sort()).toEqual(events.map((event) => event.id).sort());
    expect(Math.max(...seen.values())).toBe(3);
    // Every retry of a batch carried the same delivery id.
    expect(Object.fromEntries(deliveries)).toEqual({ dlv_batch0: 5, dlv_batch1: 1, dlv_batch2: 1 });
    expect(target.requests.every((request) => request.path === '/hooks/warden')).toBe(true);
  });

  it('sends the events as the audit API shows them and derives a stable delivery id', async () => {
    const target = await receiver(() => ({ status: 200 }));
    const event = toolCallEvent();
    const webhook = sink(target.url);
    await webhook.send([event]);
    await webhook.send([event]);
    const [first, second] = target.requests;
    expect(JSON.parse(first?.body ?? '')).toEqual({ events: [event] });
    expect(first?.headers['x-warden-delivery-id']).toMatch(/^dlv_[0-9a-f]{20}$/);
    expect(second?.headers['x-warden-delivery-id']).toBe(first?.headers['x-warden-delivery-id']);
  });

  it('classifies answers: 4xx is final, 429 honours Retry-After, redirects are refused', async () => {
    const answers: ReceiverAnswer[] = [
      { status: 400, body: 'bad payload' },
      { status: 429, headers: { 'retry-after': '2' } },
      { status: 302, headers: { location: 'http://169.254.169.254/' } },
    ];
    const target = await receiver(() => answers.shift() ?? { status: 200 });
    const webhook = sink(target.url);
    const batch = [toolCallEvent()];
    const attempt = { attempt: 1, maxAttempts: 5, backoff: { baseMs: 10, maxMs: 60_000 } };
    const rejected = await deliverBatch(webhook, batch, attempt);
    expect(rejected).toEqual({
      status: 'failed',
      attempt: 1,
      error: { message: 'webhook receiver answered HTTP 400: bad payload', retryable: false, status: 400 },
    });
    const throttled = await deliverBatch(webhook, batch, attempt);
    expect(throttled).toMatchObject({
      status: 'retry',
      delayMs: 2_000,
      error: { retryable: true, status: 429 },
    });
    const redirected = await deliverBatch(webhook, batch, attempt);
    expect(redirected).toMatchObject({
      status: 'failed',
      error: { message: 'webhook receiver answered HTTP 302: redirects are not followed', retryable: false },
    });
    expect(target.requests).toHaveLength(3);
  });

  it('treats a refused connection as retryable and gives up after maxAttempts', async () => {
    const target = await receiver(() => ({ status: 200 }));
    const url = target.url;
    await target.close();
    open.splice(open.indexOf(target), 1);
    const webhook = sink(url);
    const outcome = await deliverBatch(webhook, [toolCallEvent()], { attempt: 1, maxAttempts: 3 });
    expect(outcome).toMatchObject({
      status: 'retry',
      error: { message: 'webhook delivery failed: ECONNREFUSED', retryable: true, status: null },
    });
    const last = await deliverBatch(webhook, [toolCallEvent()], { attempt: 3, maxAttempts: 3 });
    expect(last).toMatchObject({ status: 'failed', error: { retryable: true } });
  });

  it('times out a receiver that never answers', async () => {
    const target = await receiver(() => null);
    const webhook = sink(target.url, { ...LOCAL, timeoutMs: 200 });
    await expect(webhook.send([toolCallEvent()])).rejects.toMatchObject({
      message: 'webhook delivery failed: ETIMEDOUT',
      retryable: true,
    });
    expect(target.requests).toHaveLength(1);
  });

  it('refuses plain http and private destinations unless allowed', async () => {
    expect(() => createWebhookSink({ type: 'webhook', url: 'http://example.com/h', secret: SECRET })).toThrow(
      expect.objectContaining({
        code: 'invalid_request',
        details: expect.objectContaining({ field: 'url' }),
      }),
    );
    expect(() =>
      createWebhookSink(
        { type: 'webhook', url: 'http://127.0.0.1:9/h', secret: SECRET },
        { allowInsecureHttp: true },
      ),
    ).toThrow(/url: must not point to a loopback/);
  });
});

describe('webhook signatures', () => {
  const body = JSON.stringify({ events: [toolCallEvent()] });
  const now = new Date('2026-01-01T00:00:00Z');
  const t = now.getTime() / 1000;

  it('verifies the documented scheme: HMAC-SHA256 over "<t>.<body>"', async () => {
    const { createHmac } = await import('node:crypto');
    const header = signWebhookPayload(SECRET, body, t);
    const expected = createHmac('sha256', SECRET).update(`${t}.${body}`).digest('hex');
    expect(header).toBe(`t=${t},v1=${expected}`);
    expect(verifyWebhookSignature(SECRET, header, body, 300, now)).toBe(true);
    expect(verifyWebhookSignature(SECRET, header, Buffer.from(body), 300, now)).toBe(true);
  });

  it('fails a tampered body, a wrong secret, a stale timestamp or a malformed header', () => {
    const header = signWebhookPayload(SECRET, body, t);
    const tampered = body.replace('"success"', '"refused"');
    expect(tampered).not.toBe(body);
    expect(verifyWebhookSignature(SECRET, header, tampered, 300, now)).toBe(false);
    expect(verifyWebhookSignature(`${SECRET}x`, header, body, 300, now)).toBe(false);
    expect(verifyWebhookSignature(SECRET, header, body, 300, new Date(now.getTime() + 301_000))).toBe(false);
    expect(verifyWebhookSignature(SECRET, header.replace(/^t=\d+/, `t=${t + 1}`), body, 300, now)).toBe(
      false,
    );
    for (const bad of [undefined, '', 'v1=abc', `t=${t}`, `t=${t},v1=zz`, `t=abc,${header.split(',')[1]}`]) {
      expect(verifyWebhookSignature(SECRET, bad, body, 300, now), String(bad)).toBe(false);
    }
  });

  it('accepts any matching v1 entry, for secret rotation', () => {
    const current = signWebhookPayload(SECRET, body, t);
    const old = signWebhookPayload('an-older-secret-value', body, t).split(',')[1];
    expect(verifyWebhookSignature(SECRET, `${current},${old}`, body, 300, now)).toBe(true);
    expect(verifyWebhookSignature(SECRET, `t=${t},${old},${current.split(',')[1]}`, body, 300, now)).toBe(
      true,
    );
  });

  it('signs with the sink clock', async () => {
    const target = await receiver(() => ({ status: 200 }));
    const clock = new ManualClock(now);
    const webhook = sink(target.url, { ...LOCAL, clock });
    await webhook.send([toolCallEvent()]);
    const [request] = target.requests;
    expect(request?.headers['x-warden-signature']).toMatch(new RegExp(`^t=${t},v1=[0-9a-f]{64}$`));
    expect(
      verifyWebhookSignature(
        SECRET,
        request?.headers['x-warden-signature'] as string,
        request?.body ?? '',
        300,
        now,
      ),
    ).toBe(true);
  });
});
