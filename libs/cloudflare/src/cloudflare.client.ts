import http from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import { WardenError } from '@warden/core';
import { authHeaders, credentialScrubber } from './credential.ts';
import type { CloudflareCredential } from './credential.ts';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface CloudflareRequest {
  readonly method: HttpMethod;
  /** Relative API path, e.g. `/zones/abc/dns_records`, already validated by the caller. */
  readonly path: string;
  readonly query?: Readonly<Record<string, string | number | boolean>>;
  /** JSON body (serialized here) — or `rawBody` for non-JSON uploads. */
  readonly body?: unknown;
  readonly rawBody?: string;
  readonly contentType?: string;
  readonly signal?: AbortSignal;
}

export interface CloudflareMessage {
  readonly code?: number;
  readonly message: string;
}

/** Cloudflare's envelope, normalized: non-JSON bodies (KV values, script sources) land in `result`. */
export interface CloudflareResponse {
  readonly status: number;
  readonly success: boolean;
  readonly result: unknown;
  readonly errors: readonly CloudflareMessage[];
  readonly messages: readonly CloudflareMessage[];
  readonly resultInfo?: unknown;
  readonly cfRay: string | null;
  /** Seconds, from `Retry-After` on a 429. */
  readonly retryAfterSeconds: number | null;
  /** The raw `Ratelimit` header (`"default";r=50;t=30`: remaining quota, seconds to its reset). */
  readonly rateLimit: string | null;
  /** The raw `Ratelimit-Policy` header (`"default";q=1200;w=300`: quota per window). */
  readonly rateLimitPolicy: string | null;
  readonly responseBytes: number;
}

export interface CloudflareClientOptions {
  /** `https://api.cloudflare.com/client/v4` or a fake's URL; no trailing slash needed. */
  readonly baseUrl: string;
  readonly timeoutMs?: number;
  readonly userAgent?: string;
  /** Largest response body accepted, in bytes. */
  readonly maxResponseBytes?: number;
  /**
   * Called once per request as it ends: milliseconds from sending it to its answer (or to its
   * failure), and the answer's HTTP status (null when none came: timeout, unreachable, cancelled).
   */
  readonly onAnswered?: (answer: { readonly ms: number; readonly status: number | null }) => void;
}

export interface CloudflareClient {
  readonly baseUrl: string;
  send(credential: CloudflareCredential, request: CloudflareRequest): Promise<CloudflareResponse>;
  /** Closes idle keep-alive sockets. */
  close?(): void;
}

function messages(value: unknown): CloudflareMessage[] {
  if (!Array.isArray(value)) return [];
  return value
    .filter((m): m is Record<string, unknown> => typeof m === 'object' && m !== null)
    .map((m) => ({
      ...(typeof m.code === 'number' ? { code: m.code } : {}),
      message: typeof m.message === 'string' ? m.message : JSON.stringify(m),
    }));
}

function parseRetryAfter(value: string | null): number | null {
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/**
 * Cloudflare's envelope (or GraphQL's `{data, errors}`, or any other body) as a `CloudflareResponse`.
 * `scrub` replaces the credential's secrets in the body and in the headers kept (they reach the
 * audit trail), as Cloudflare may echo them anywhere.
 */
function toResponse(
  status: number,
  rawHeaders: IncomingHttpHeaders,
  rawBuffer: Buffer,
  scrub: (bytes: Buffer) => Buffer,
): CloudflareResponse {
  const buffer = scrub(rawBuffer);
  const header = (name: string): string | null => {
    const value = headerValue(rawHeaders[name]);
    return value === null ? null : scrub(Buffer.from(value, 'utf8')).toString('utf8');
  };
  const headers = {
    'cf-ray': header('cf-ray'),
    'retry-after': header('retry-after'),
    'content-type': header('content-type'),
    ratelimit: header('ratelimit'),
    'ratelimit-policy': header('ratelimit-policy'),
  };
  const ok = status >= 200 && status < 300;
  const cfRay = headers['cf-ray'];
  const retryAfterSeconds = parseRetryAfter(headers['retry-after']);
  const contentType = headers['content-type'] ?? '';
  const common = {
    status,
    cfRay,
    retryAfterSeconds,
    rateLimit: headers.ratelimit,
    rateLimitPolicy: headers['ratelimit-policy'],
    responseBytes: buffer.length,
  };

  if (contentType.includes('json')) {
    let json: unknown;
    try {
      json = JSON.parse(buffer.toString('utf8'));
    } catch {
      json = undefined;
    }
    if (json && typeof json === 'object' && !Array.isArray(json) && ('success' in json || 'result' in json)) {
      const envelope = json as Record<string, unknown>;
      return {
        ...common,
        success: envelope.success === true || (envelope.success === undefined && ok),
        result: envelope.result ?? null,
        errors: messages(envelope.errors),
        messages: messages(envelope.messages),
        ...(envelope.result_info !== undefined ? { resultInfo: envelope.result_info } : {}),
      };
    }
    // GraphQL answers `{data, errors}`; other JSON is passed through as the result.
    const errors = json && typeof json === 'object' ? messages((json as Record<string, unknown>).errors) : [];
    return { ...common, success: ok && errors.length === 0, result: json ?? null, errors, messages: [] };
  }
  return {
    ...common,
    success: ok,
    result: buffer.toString('utf8'),
    errors: ok ? [] : [{ message: `HTTP ${status}` }],
    messages: [],
  };
}

function headerValue(value: string | string[] | undefined): string | null {
  return (Array.isArray(value) ? value[0] : value) ?? null;
}

/**
 * The upstream HTTP client. node:http(s) with keep-alive sockets rather than `fetch`: on
 * the execute path every upstream request pays for the client, and fetch's web streams
 * cost several times more CPU per request. Redirects are never followed; the response
 * body is capped while it streams in.
 */
export function createCloudflareClient(options: CloudflareClientOptions): CloudflareClient {
  const base = options.baseUrl.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? 30_000;
  const maxBytes = options.maxResponseBytes ?? 10 * 1024 * 1024;
  const userAgent = options.userAgent ?? 'warden';
  const secure = new URL(base).protocol === 'https:';
  const transport = secure ? https : http;
  // Idle sockets close after 4 s, before a server's usual 5 s keep-alive timeout can race a reuse.
  const agent = new transport.Agent({
    keepAlive: true,
    scheduling: 'lifo',
    maxFreeSockets: 64,
    timeout: 4_000,
  });

  function send(credential: CloudflareCredential, request: CloudflareRequest): Promise<CloudflareResponse> {
    const url = new URL(base + request.path);
    for (const [k, v] of Object.entries(request.query ?? {})) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { 'user-agent': userAgent, accept: 'application/json' };
    let body: string | undefined;
    if (request.rawBody !== undefined) {
      body = request.rawBody;
      headers['content-type'] = request.contentType ?? 'application/octet-stream';
    } else if (request.body !== undefined) {
      body = JSON.stringify(request.body);
      headers['content-type'] = request.contentType ?? 'application/json';
    }
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    // Set last so nothing above can shadow or duplicate the credential headers.
    Object.assign(headers, authHeaders(credential));

    const started = performance.now();
    return new Promise<CloudflareResponse>((resolve, reject) => {
      let settled = false;
      const finish = (outcome: CloudflareResponse | WardenError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.signal?.removeEventListener('abort', onAbort);
        options.onAnswered?.({
          ms: performance.now() - started,
          status: outcome instanceof WardenError ? null : outcome.status,
        });
        if (outcome instanceof WardenError) reject(outcome);
        else resolve(outcome);
      };
      /** Settles with `error` first, then tears the exchange down (whatever it emits is ignored). */
      const fail = (error: WardenError): void => {
        finish(error);
        req.destroy();
      };
      const req = transport.request(url, { method: request.method, headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) {
            fail(new WardenError('upstream_error', `Cloudflare's response exceeds ${maxBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () =>
          finish(
            toResponse(
              res.statusCode ?? 0,
              res.headers,
              Buffer.concat(chunks),
              credentialScrubber(credential),
            ),
          ),
        );
        res.on('error', () => finish(unreachable()));
        res.on('aborted', () => finish(unreachable()));
      });
      const timer = setTimeout(
        () => fail(new WardenError('upstream_timeout', `Cloudflare did not answer within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const onAbort = () =>
        fail(new WardenError('upstream_error', 'the request to Cloudflare was cancelled'));
      if (request.signal?.aborted) onAbort();
      else request.signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (error) => finish(unreachable(error)));
      req.end(body);
    });
  }

  return { baseUrl: base, send, close: () => agent.destroy() };
}

function unreachable(cause?: unknown): WardenError {
  return new WardenError('upstream_error', 'Cloudflare is unreachable; retry shortly', {}, { cause });
}
