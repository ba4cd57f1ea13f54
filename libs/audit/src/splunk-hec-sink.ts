import { hostname as osHostname } from 'node:os';
import { systemClock } from '@warden/core';
import type { AuditEvent } from './audit-event.ts';
import { DEFAULT_SINK_TIMEOUT_MS } from './audit-sink.ts';
import type { AuditSink, SinkRuntimeOptions } from './audit-sink.ts';
import { withCodeCapped } from './format-common.ts';
import { createHttpPoster } from './http-post.ts';
import { parseSinkConfig } from './sink-config.ts';
import type { SplunkHecSinkConfig } from './sink-config.ts';
import { SinkDeliveryError, httpFailure, networkFailure, responseExcerpt } from './sink-errors.ts';

const EVENT_PATH = '/services/collector/event';

/** Splunk truncates events at 10,000 bytes unless the sourcetype says otherwise (TRUNCATE). */
const DEFAULT_MAX_CODE_CHARS = 8_000;

/** Accepts the HEC base URL, with or without the endpoint path already on it. */
export function hecEventUrl(base: string): URL {
  const url = new URL(base);
  const path = url.pathname.replace(/\/+$/, '');
  url.pathname = path.endsWith(EVENT_PATH) ? path : `${path}${EVENT_PATH}`;
  return url;
}

/**
 * Sends a batch as concatenated HEC event objects, one per line, to `/services/collector/event`.
 * Success is HEC's `{"text":"Success","code":0}`; a 2xx with any other body means the URL is not
 * a HEC endpoint, which retrying will not fix.
 */
export function createSplunkHecSink(
  config: SplunkHecSinkConfig,
  options: SinkRuntimeOptions = {},
): AuditSink {
  const valid = parseSinkConfig(config, options) as SplunkHecSinkConfig;
  const clock = options.clock ?? systemClock;
  const host = options.hostname ?? osHostname();
  const maxCodeChars = options.maxCodeChars ?? DEFAULT_MAX_CODE_CHARS;
  const secrets = [valid.token];
  const poster = createHttpPoster(hecEventUrl(valid.url), {
    timeoutMs: options.timeoutMs ?? DEFAULT_SINK_TIMEOUT_MS,
    allowPrivateNetwork: options.allowPrivateNetwork === true,
  });

  function hecEvent(event: AuditEvent): string {
    return JSON.stringify({
      time: Date.parse(event.occurred_at) / 1000,
      host,
      source: 'warden',
      sourcetype: 'warden:audit',
      ...(valid.index ? { index: valid.index } : {}),
      event: withCodeCapped(event, maxCodeChars),
    });
  }

  async function send(batch: readonly AuditEvent[]): Promise<void> {
    if (batch.length === 0) return;
    const response = await poster
      .post(batch.map(hecEvent).join('\n'), {
        authorization: `Splunk ${valid.token}`,
        'content-type': 'application/json',
        'user-agent': 'Warden-HEC/1',
      })
      .catch((error: unknown) => {
        throw networkFailure('splunk_hec', error);
      });
    if (response.status < 200 || response.status >= 300) {
      throw httpFailure(
        'splunk_hec',
        { status: response.status, body: response.body, retryAfter: response.headers['retry-after'] },
        secrets,
        clock.now(),
      );
    }
    let answer: unknown;
    try {
      answer = JSON.parse(response.body);
    } catch {
      answer = undefined;
    }
    if (typeof answer === 'object' && answer !== null && (answer as { code?: unknown }).code === 0) return;
    throw new SinkDeliveryError(
      `splunk_hec receiver answered HTTP ${response.status} without HEC success: ${responseExcerpt(response.body, secrets)}`,
      { retryable: false, status: response.status },
    );
  }

  return {
    type: 'splunk_hec',
    send,
    close: async () => poster.close(),
  };
}
