import { afterEach, describe, expect, it } from 'vitest';
import type { AuditSink } from './audit-sink.ts';
import { deliverBatch } from './sink-delivery.ts';
import { createSplunkHecSink, hecEventUrl } from './splunk-hec-sink.ts';
import { eventSeries, toolCallEvent } from './test-support/audit-event-fixtures.ts';
import { startReceiver } from './test-support/http-receiver.ts';
import type { ReceivedRequest, Receiver, ReceiverAnswer } from './test-support/http-receiver.ts';

const TOKEN = '11111111-2222-3333-4444-555555555555';
const SUCCESS = { status: 200, body: '{"text":"Success","code":0}' };

const open: Array<Receiver | AuditSink> = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((item) => item.close()));
});

async function setup(
  answer: (request: ReceivedRequest) => ReceiverAnswer,
  config: { index?: string; path?: string } = {},
): Promise<{ receiver: Receiver; sink: AuditSink }> {
  const receiver = await startReceiver(answer);
  const sink = createSplunkHecSink(
    { type: 'splunk_hec', url: `${receiver.url}${config.path ?? ''}`, token: TOKEN, index: config.index },
    { allowInsecureHttp: true, allowPrivateNetwork: true, hostname: 'warden-1.example', maxCodeChars: 50 },
  );
  open.push(receiver, sink);
  return { receiver, sink };
}

/** HEC accepts JSON objects back to back; split them without trusting newlines. */
function splitConcatenatedJson(body: string): unknown[] {
  const objects: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < body.length; i += 1) {
    const char = body[i];
    if (inString) {
      if (char === '\\') i += 1;
      else if (char === '"') inString = false;
    } else if (char === '"') inString = true;
    else if (char === '{') {
      if (depth === 0) start = i;
      depth += 1;
    } else if (char === '}') {
      depth -= 1;
      if (depth === 0) objects.push(JSON.parse(body.slice(start, i + 1)));
    } else if (depth === 0 && !/\s/.test(char ?? '')) {
      throw new Error(`stray character ${char} at ${i}`);
    }
  }
  expect(depth).toBe(0);
  return objects;
}

describe('Splunk HEC sink', () => {
  it('posts concatenated HEC events to /services/collector/event with the Splunk token', async () => {
    const { receiver, sink } = await setup(() => SUCCESS, { index: 'warden_audit' });
    const events = eventSeries(3).map((event) => ({ ...event, code: 'c'.repeat(500) }));
    await sink.send(events);
    const [request] = receiver.requests;
    expect(request?.method).toBe('POST');
    expect(request?.path).toBe('/services/collector/event');
    expect(request?.headers.authorization).toBe(`Splunk ${TOKEN}`);
    expect(request?.headers['content-type']).toBe('application/json');
    const objects = splitConcatenatedJson(request?.body ?? '');
    expect(objects).toHaveLength(3);
    expect(request?.body.split('\n')).toHaveLength(3);
    objects.forEach((object, i) => {
      const event = events[i];
      expect(object).toEqual({
        time: Date.parse(event?.occurred_at ?? '') / 1000,
        host: 'warden-1.example',
        source: 'warden',
        sourcetype: 'warden:audit',
        index: 'warden_audit',
        event: { ...event, code: expect.stringMatching(/^c+\.\.\.\[truncated, 500 chars\]$/) },
      });
    });
    expect((objects[0] as { time: number }).time).toBe(1767268800.123);
  });

  it('accepts a URL that already names the endpoint, and leaves out an unset index', async () => {
    expect(hecEventUrl('https://splunk.example:8088/').pathname).toBe('/services/collector/event');
    expect(hecEventUrl('https://splunk.example/services/collector/event').pathname).toBe(
      '/services/collector/event',
    );
    expect(hecEventUrl('https://proxy.example/splunk').pathname).toBe('/splunk/services/collector/event');
    const { receiver, sink } = await setup(() => SUCCESS, { path: '/services/collector/event' });
    await sink.send([toolCallEvent()]);
    expect(receiver.requests[0]?.path).toBe('/services/collector/event');
    expect(JSON.parse(receiver.requests[0]?.body ?? '')).not.toHaveProperty('index');
  });

  it('retries a busy or throttled indexer and stops on a bad token', async () => {
    const answers: ReceiverAnswer[] = [
      { status: 503, body: '{"text":"Server is busy","code":9}' },
      { status: 429, body: '{"text":"Too many requests","code":9}' },
      { status: 500, body: '{"text":"Internal server error","code":8}' },
      { status: 403, body: '{"text":"Invalid token","code":4}' },
    ];
    const { sink } = await setup(() => answers.shift() ?? SUCCESS);
    const batch = [toolCallEvent()];
    const attempt = { attempt: 1, maxAttempts: 5 };
    expect(await deliverBatch(sink, batch, attempt)).toMatchObject({
      status: 'retry',
      error: {
        status: 503,
        retryable: true,
        message: 'splunk_hec receiver answered HTTP 503: {"text":"Server is busy","code":9}',
      },
    });
    expect(await deliverBatch(sink, batch, attempt)).toMatchObject({
      status: 'retry',
      error: { status: 429 },
    });
    expect(await deliverBatch(sink, batch, attempt)).toMatchObject({
      status: 'retry',
      error: { status: 500 },
    });
    expect(await deliverBatch(sink, batch, attempt)).toMatchObject({
      status: 'failed',
      error: { status: 403, retryable: false },
    });
    expect(await deliverBatch(sink, batch, attempt)).toEqual({ status: 'delivered', attempt: 1 });
  });

  it('never repeats the token, even when the receiver echoes it back', async () => {
    const { sink } = await setup((request) => ({
      status: 400,
      body: `bad request, you sent: ${request.headers.authorization}`,
    }));
    const error = await sink.send([toolCallEvent()]).catch((e: unknown) => e);
    expect(error).toMatchObject({ retryable: false, status: 400 });
    expect(String((error as Error).message)).toBe(
      'splunk_hec receiver answered HTTP 400: bad request, you sent: Splunk [redacted]',
    );
    expect(JSON.stringify(error)).not.toContain(TOKEN);
  });

  it('does not take a 200 from something that is not HEC for a delivery', async () => {
    const { sink } = await setup(() => ({ status: 200, body: '<html>login</html>' }));
    await expect(sink.send([toolCallEvent()])).rejects.toMatchObject({
      retryable: false,
      message: 'splunk_hec receiver answered HTTP 200 without HEC success: <html>login</html>',
    });
  });

  it('refuses a plain http URL without the test option', () => {
    expect(() =>
      createSplunkHecSink({ type: 'splunk_hec', url: 'http://splunk.example:8088', token: TOKEN }),
    ).toThrow('url: must use https');
  });
});
