import http from 'node:http';
import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { assertPublicHost, publicOnlyLookup } from './network-guard.ts';

/** Enough of the receiver's answer to explain a failure; the rest is drained unread. */
const MAX_RESPONSE_CHARS = 4096;

export interface HttpPostResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface HttpPoster {
  post(body: string, headers: Readonly<Record<string, string>>): Promise<HttpPostResponse>;
  close(): void;
}

/**
 * POSTs to one fixed URL over a keep-alive agent, never following redirects, with one overall
 * deadline per request. Rejects with the raw network error; callers classify it.
 */
export function createHttpPoster(
  url: URL,
  options: { readonly timeoutMs: number; readonly allowPrivateNetwork: boolean },
): HttpPoster {
  const secure = url.protocol === 'https:';
  const agent = secure ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
  const request = secure ? https.request : http.request;

  function post(body: string, headers: Readonly<Record<string, string>>): Promise<HttpPostResponse> {
    if (!options.allowPrivateNetwork) assertPublicHost(url.hostname);
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method: 'POST',
          agent,
          headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
          signal: AbortSignal.timeout(options.timeoutMs),
          ...(options.allowPrivateNetwork ? {} : { lookup: publicOnlyLookup }),
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            if (text.length < MAX_RESPONSE_CHARS) text += chunk;
          });
          res.on('end', () => {
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: text.slice(0, MAX_RESPONSE_CHARS),
            });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  return { post, close: () => agent.destroy() };
}
