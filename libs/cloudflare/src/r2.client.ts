import { createHash } from 'node:crypto';
import { AwsClient } from 'aws4fetch';
import { WardenError } from '@warden/core';
import type { CloudflareCredential } from './credential.ts';
import { REDACTED, credentialSecrets, secretsFinder } from './credential.ts';
import type { SecretFinder } from './secret-finder.ts';

/** Where a bucket lives: the jurisdiction picks the S3 endpoint (`<account>.eu.r2…`, `<account>.fedramp.r2…`). */
export type R2Jurisdiction = 'default' | 'eu' | 'fedramp';

export const R2_JURISDICTIONS: readonly R2Jurisdiction[] = ['default', 'eu', 'fedramp'];

/** An S3 access key pair for R2. Never logged, never returned. */
export interface R2Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

/**
 * The S3 credentials of a Cloudflare API token, as Cloudflare documents them ("Get S3 API
 * credentials from an API token", https://developers.cloudflare.com/r2/api/tokens/): the Access
 * Key ID is the token's id, the Secret Access Key the SHA-256 hash (hex) of the token's value.
 * The token needs an R2 permission (Workers R2 Storage Read, or Write to put and delete).
 */
export function r2CredentialsFromApiToken(tokenId: string, apiToken: string): R2Credentials {
  return { accessKeyId: tokenId, secretAccessKey: r2SecretOfApiToken(apiToken) };
}

function r2SecretOfApiToken(apiToken: string): string {
  return createHash('sha256').update(apiToken, 'utf8').digest('hex');
}

/**
 * The R2 secrets a call made with this credential may hold, for `credentialScrubber`: the secret
 * of the R2 access key pair vaulted beside it (if any), and the one derived from an API token.
 */
export function r2Secrets(credential: CloudflareCredential, accessKey: R2Credentials | null): string[] {
  const secrets = accessKey ? [accessKey.secretAccessKey] : [];
  if (credential.type === 'api_token') secrets.push(r2SecretOfApiToken(credential.apiToken));
  return secrets;
}

export type R2Method = 'GET' | 'HEAD' | 'PUT' | 'DELETE';

export interface R2HttpRequest {
  readonly method: R2Method;
  readonly accountId: string;
  readonly jurisdiction: R2Jurisdiction;
  readonly bucket: string;
  /** The object key; absent for bucket-level requests (ListObjectsV2). */
  readonly key?: string;
  readonly query?: Readonly<Record<string, string>>;
  readonly body?: Buffer;
  readonly contentType?: string;
  /** An HTTP `Range` value, e.g. `bytes=0-99`. */
  readonly range?: string;
  readonly signal?: AbortSignal;
  /**
   * Called once the request is signed, right before it leaves (signing waits on the thread pool):
   * it may throw to withdraw the request, which is then not sent and the error passed on as is.
   */
  readonly beforeSend?: () => Promise<void>;
  /**
   * Called once R2 has answered, before its body is read (not for HEAD), with the declared
   * `Content-Length` (null when none): it may wait for room to hold the body, or throw to refuse
   * it, the body then left unread and cancelled.
   */
  readonly admitBody?: (declaredBytes: number | null) => Promise<void>;
}

export interface R2HttpResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** Scrubbed of the credential's secrets (see `credentialScrubber`). */
  readonly body: Buffer;
  readonly cfRay: string | null;
}

export interface R2ClientOptions {
  /**
   * The S3 endpoint per account and jurisdiction, as a template with `{account_id}` and
   * `{jurisdiction}` (`default`, `eu`, `fedramp`), requests going path-style to
   * `<endpoint>/<bucket>/<key>`. Unset: Cloudflare's `https://<account_id>[.<jurisdiction>].r2.cloudflarestorage.com`.
   */
  readonly endpoint?: string;
  readonly timeoutMs?: number;
  /** Largest response body read, in bytes; a larger one is refused with `payload_too_large`. */
  readonly maxResponseBytes: number;
  readonly userAgent?: string;
}

export interface R2Client {
  /** The endpoint (no trailing slash) a request of this account and jurisdiction goes to. */
  endpointFor(accountId: string, jurisdiction: R2Jurisdiction): string;
  send(
    credentials: R2Credentials,
    credential: CloudflareCredential,
    request: R2HttpRequest,
  ): Promise<R2HttpResponse>;
}

/**
 * S3 keys are percent-encoded per segment, `/` kept, every byte but RFC 3986's unreserved
 * characters encoded: the URL sent is then the canonical URI SigV4 signs.
 */
function encodeKey(key: string): string {
  return key
    .split('/')
    .map((segment) =>
      encodeURIComponent(segment).replace(
        /[!'()*]/g,
        (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
      ),
    )
    .join('/');
}

function tooLarge(bytes: number | null, limit: number): WardenError {
  return new WardenError(
    'payload_too_large',
    `the object is ${bytes === null ? 'more than' : ''}${bytes ?? limit} bytes, over the R2 size limit of ${limit} bytes (R2_MAX_OBJECT_BYTES); read a range of it`,
    { limit },
  );
}

/**
 * The R2 data plane over its S3-compatible API. Requests are signed with AWS Signature V4 by
 * aws4fetch (region `auto`, service `s3`) in this process; the payload hash, `Range` and
 * `Content-Type` are signed too.
 */
export function createR2Client(options: R2ClientOptions): R2Client {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const template = options.endpoint?.replace(/\/+$/, '');

  function endpointFor(accountId: string, jurisdiction: R2Jurisdiction): string {
    if (template) {
      return template.replaceAll('{account_id}', accountId).replaceAll('{jurisdiction}', jurisdiction);
    }
    const region = jurisdiction === 'default' ? '' : `.${jurisdiction}`;
    return `https://${accountId}${region}.r2.cloudflarestorage.com`;
  }

  async function send(
    credentials: R2Credentials,
    credential: CloudflareCredential,
    request: R2HttpRequest,
  ): Promise<R2HttpResponse> {
    const url = new URL(
      `${endpointFor(request.accountId, request.jurisdiction)}/${request.bucket}${request.key !== undefined ? `/${encodeKey(request.key)}` : ''}`,
    );
    for (const [k, v] of Object.entries(request.query ?? {})) url.searchParams.set(k, v);
    const body = request.body;
    const headers: Record<string, string> = {
      'x-amz-content-sha256': createHash('sha256')
        .update(body ?? Buffer.alloc(0))
        .digest('hex'),
    };
    if (options.userAgent) headers['user-agent'] = options.userAgent;
    if (request.contentType !== undefined) headers['content-type'] = request.contentType;
    const finder = r2Finder(credentials, credential);
    // A range is read with a margin so a secret it cuts through is still found (see `redact`).
    const margin = finder.reach;
    const range =
      request.range !== undefined && request.method === 'GET' ? widen(request.range, margin) : null;
    if (request.range !== undefined) headers.range = range?.header ?? request.range;
    const aws = new AwsClient({
      accessKeyId: credentials.accessKeyId,
      secretAccessKey: credentials.secretAccessKey,
      service: 's3',
      region: 'auto',
      retries: 0,
    });
    // Every header sent is signed: aws4fetch leaves Range and Content-Type out by default, so a
    // range or content type changed on the way would still pass R2's check.
    const signed = await aws.sign(url.toString(), {
      method: request.method,
      headers,
      ...(body !== undefined ? { body: new Uint8Array(body) } : {}),
      aws: { allHeaders: true },
    });
    await request.beforeSend?.();
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = request.signal ? AbortSignal.any([request.signal, timeout]) : timeout;
    let response: Response;
    try {
      response = await fetch(signed, { redirect: 'manual', signal });
    } catch (error) {
      throw failure(error, timeout, timeoutMs);
    }
    // The margin read around a range does not count against the limit: it is not returned.
    const limit = options.maxResponseBytes + (range ? 2 * margin : 0);
    const declared = Number(response.headers.get('content-length') ?? NaN);
    if (request.method === 'GET' && Number.isFinite(declared) && declared > limit && response.status < 300) {
      await response.body?.cancel().catch(() => undefined);
      throw tooLarge(declared, options.maxResponseBytes);
    }
    if (request.admitBody && request.method !== 'HEAD') {
      try {
        await request.admitBody(Number.isFinite(declared) ? declared : null);
      } catch (error) {
        await response.body?.cancel().catch(() => undefined);
        throw error;
      }
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      if (response.body) {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          size += chunk.byteLength;
          if (size > limit) {
            await response.body.cancel().catch(() => undefined);
            throw tooLarge(null, options.maxResponseBytes);
          }
          chunks.push(Buffer.from(chunk));
        }
      }
    } catch (error) {
      if (error instanceof WardenError) throw error;
      throw failure(error, timeout, timeoutMs);
    }
    // Header values (an ETag, a content type, the ray id the trail keeps) are scrubbed as the body is.
    const out: Record<string, string> = {};
    response.headers.forEach((value, name) => {
      out[name] = scrubText(finder, value);
    });
    const all = Buffer.concat(chunks);
    const cfRay = out['cf-ray'] ?? null;
    const got = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(out['content-range'] ?? '');
    if (!range || response.status !== 206 || !got) {
      return {
        status: response.status,
        headers: out,
        body: redact(all, finder, 0, 0, all.length - 1),
        cfRay,
      };
    }
    // Back to the bytes asked for: R2's answer to the range as sent.
    const start = Number(got[1]);
    const total = got[3] === '*' ? Number(got[2]) + 1 : Number(got[3]);
    const [from, to] = range.ask(start, total);
    if (from > to) {
      return {
        status: 416,
        headers: { ...out, 'content-range': `bytes */${total}`, 'content-type': 'application/xml' },
        body: Buffer.from(
          '<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidRange</Code><Message>The requested range is not satisfiable</Message></Error>',
        ),
        cfRay,
      };
    }
    return {
      status: 206,
      headers: {
        ...out,
        'content-range': `bytes ${from}-${to}/${got[3]}`,
        'content-length': String(to - from + 1),
      },
      body: redact(all, finder, start, from, to),
      cfRay,
    };
  }

  return { endpointFor, send };
}

/**
 * What may not come back in a body: the credential's secrets and the R2 secrets of the call
 * (`r2Secrets`: the one that signs, and the one derived from an API token even when a vaulted key
 * pair signs), found as `credentialScrubber` finds them.
 */
function r2Finder(credentials: R2Credentials, credential: CloudflareCredential): SecretFinder {
  return secretsFinder([
    ...credentialSecrets(credential),
    credentials.secretAccessKey,
    ...r2Secrets(credential, null),
  ]);
}

const REDACTED_BYTES = Buffer.from(REDACTED, 'utf8');

function scrubText(finder: SecretFinder, text: string): string {
  const bytes = Buffer.from(text, 'utf8');
  return finder.find(bytes).length === 0
    ? text
    : redact(bytes, finder, 0, 0, bytes.length - 1).toString('utf8');
}

/**
 * `body` (which starts at byte `start` of the object) cut to the bytes `from`…`to` (inclusive),
 * every run of it that belongs to an occurrence of a secret anywhere in `body` replaced by
 * `[REDACTED]`. A range read asks R2 for a margin of `SecretFinder.reach` on each side, so a
 * secret split across two ranges is found whole in each and neither part comes back.
 */
function redact(body: Buffer, finder: SecretFinder, start: number, from: number, to: number): Buffer {
  const runs = finder.find(body, { cut: start > 0 });
  const first = Math.max(from, start);
  const end = Math.min(to + 1, start + body.length);
  if (runs.length === 0) return body.subarray(first - start, Math.max(first, end) - start);
  const parts: Buffer[] = [];
  let at = first;
  for (const [spanStart, spanEnd] of runs) {
    const runStart = start + spanStart;
    const runEnd = start + spanEnd;
    if (runEnd <= at || runStart >= end) continue;
    if (runStart > at) parts.push(body.subarray(at - start, runStart - start));
    parts.push(REDACTED_BYTES);
    at = Math.min(runEnd, end);
  }
  if (at < end) parts.push(body.subarray(at - start, end - start));
  return Buffer.concat(parts);
}

/** A `Range` widened by `margin` bytes on each side, and the bytes it was asked for. */
function widen(
  range: string,
  margin: number,
): { header: string; ask: (start: number, size: number) => [number, number] } {
  const m = /^bytes=(\d*)-(\d*)$/.exec(range);
  if (!m || (m[1] === '' && m[2] === '')) return { header: range, ask: (start, size) => [start, size - 1] };
  if (m[1] === '') {
    const suffix = Number(m[2]);
    return { header: `bytes=-${suffix + margin}`, ask: (_, size) => [Math.max(0, size - suffix), size - 1] };
  }
  const offset = Number(m[1]);
  const last = m[2] === '' ? null : Number(m[2]);
  return {
    header: `bytes=${Math.max(0, offset - margin)}-${last === null ? '' : last + margin}`,
    ask: (_, size) => [offset, last === null ? size - 1 : Math.min(last, size - 1)],
  };
}

function failure(error: unknown, timeout: AbortSignal, timeoutMs: number): WardenError {
  if (timeout.aborted) return new WardenError('upstream_timeout', `R2 did not answer within ${timeoutMs} ms`);
  if (error instanceof Error && error.name === 'AbortError') {
    return new WardenError('upstream_error', 'the request to R2 was cancelled');
  }
  return new WardenError('upstream_error', 'R2 is unreachable; retry shortly', {}, { cause: error });
}
