import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An HTTP server in front of the fake Cloudflare, for tests of answers the fake does not give
 * (a token echoed in odd encodings, response shapes of operations it does not implement):
 * `answer` handles a request itself and returns true, or returns false to let it through to
 * `upstream` unchanged. `base` is what `CLOUDFLARE_API_BASE` should be (the proxy, upstream's path).
 */
export async function startEdgeProxy(
  upstream: string,
  answer: (req: http.IncomingMessage, res: http.ServerResponse) => boolean,
): Promise<{ readonly base: string; close(): Promise<void> }> {
  const target = new URL(upstream);
  const edge = http.createServer((req, res) => {
    if (answer(req, res)) return;
    const out = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    req.pipe(out);
  });
  await new Promise<void>((resolve) => edge.listen(0, '127.0.0.1', resolve));
  const port = (edge.address() as AddressInfo).port;
  return {
    base: `http://127.0.0.1:${port}${target.pathname}`,
    async close() {
      edge.closeAllConnections();
      await new Promise((resolve) => edge.close(resolve));
    },
  };
}

/** Answers as Cloudflare's API does: its envelope, with one error (`message`) unless `status` is 2xx. */
export function replyEnvelope(
  res: http.ServerResponse,
  status: number,
  result: unknown,
  message?: string,
): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(
    JSON.stringify({
      success: status < 300,
      errors: status < 300 ? [] : [{ code: 10000, message: message ?? `HTTP ${status}` }],
      messages: [],
      result,
    }),
  );
}
