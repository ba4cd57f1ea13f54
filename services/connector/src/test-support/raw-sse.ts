/**
 * A raw client of the older MCP transport (`GET /sse` + `POST /messages`), for tests of what
 * reaches a stream across replicas: `rawSse` opens a stream and collects its `message` events,
 * `postMessage` posts a body (any content type) to a session, `ping` is a JSON-RPC ping that a
 * stream answers, `answered` tells whether the answer of an id has arrived on a stream.
 */
export interface RawSse {
  readonly sessionId: string;
  /** `data` of every `message` event so far. */
  readonly messages: string[];
  closed: boolean;
  close(): void;
}

export async function rawSse(on: string, token: string): Promise<RawSse> {
  const controller = new AbortController();
  const res = await fetch(`${on}/sse`, {
    headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
    signal: controller.signal,
  });
  if (res.status !== 200 || !res.body) throw new Error(`GET /sse: ${res.status}`);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const messages: string[] = [];
  let buffer = '';
  let resolveEndpoint: (id: string) => void = () => {};
  const endpoint = new Promise<string>((resolve) => (resolveEndpoint = resolve));
  const stream: RawSse = {
    sessionId: '',
    messages,
    closed: false,
    close: () => controller.abort(),
  };
  void (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
          const data = block
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          if (event === 'endpoint') resolveEndpoint(new URL(data, on).searchParams.get('sessionId') ?? '');
          else if (event === 'message') messages.push(data);
        }
      }
    } catch {
      // aborted
    }
    stream.closed = true;
  })();
  (stream as { sessionId: string }).sessionId = await endpoint;
  return stream;
}

export async function postMessage(
  on: string,
  sessionId: string,
  token: string,
  body: unknown,
  contentType = 'application/json',
): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  const res = await fetch(`${on}/messages?sessionId=${encodeURIComponent(sessionId)}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': contentType },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  await res.text();
  return { status: res.status, ms: performance.now() - started };
}

export const ping = (id: string) => ({ jsonrpc: '2.0', id, method: 'ping' });
export const answered = (s: RawSse, id: string) => s.messages.some((m) => m.includes(`"id":"${id}"`));
