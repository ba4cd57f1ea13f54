import { createHash } from 'node:crypto';
import { AwsClient } from 'aws4fetch';
import { WardenError } from '@warden/core';
import type { CloudflareCredential } from './credential.ts';
import { credentialScrubber } from './credential.ts';

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
  return {
    accessKeyId: tokenId,
    secretAccessKey: createHash('sha256').update(apiToken, 'utf8').digest('hex'),
  };
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
    if (request.range !== undefined) headers.range = request.range;
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
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = request.signal ? AbortSignal.any([request.signal, timeout]) : timeout;
    let response: Response;
    try {
      response = await fetch(signed, { redirect: 'manual', signal });
    } catch (error) {
      throw failure(error, timeout, timeoutMs);
    }
    const limit = options.maxResponseBytes;
    const declared = Number(response.headers.get('content-length') ?? NaN);
    if (request.method === 'GET' && Number.isFinite(declared) && declared > limit && response.status < 300) {
      await response.body?.cancel().catch(() => undefined);
      throw tooLarge(declared, limit);
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
            throw tooLarge(null, limit);
          }
          chunks.push(Buffer.from(chunk));
        }
      }
    } catch (error) {
      if (error instanceof WardenError) throw error;
      throw failure(error, timeout, timeoutMs);
    }
    const out: Record<string, string> = {};
    response.headers.forEach((value, name) => {
      out[name] = value;
    });
    return {
      status: response.status,
      headers: out,
      body: scrub(credentials, credential)(Buffer.concat(chunks)),
      cfRay: response.headers.get('cf-ray'),
    };
  }

  return { endpointFor, send };
}

/** The API token's forms and the derived secret: none may come back in a body. */
function scrub(credentials: R2Credentials, credential: CloudflareCredential): (body: Buffer) => Buffer {
  const token = credentialScrubber(credential);
  const secret = Buffer.from(credentials.secretAccessKey, 'utf8');
  return (body) => {
    const cleaned = token(body);
    if (!cleaned.includes(secret)) return cleaned;
    return Buffer.from(
      cleaned.toString('utf8').split(credentials.secretAccessKey).join('[REDACTED]'),
      'utf8',
    );
  };
}

function failure(error: unknown, timeout: AbortSignal, timeoutMs: number): WardenError {
  if (timeout.aborted) return new WardenError('upstream_timeout', `R2 did not answer within ${timeoutMs} ms`);
  if (error instanceof Error && error.name === 'AbortError') {
    return new WardenError('upstream_error', 'the request to R2 was cancelled');
  }
  return new WardenError('upstream_error', 'R2 is unreachable; retry shortly', {}, { cause: error });
}
