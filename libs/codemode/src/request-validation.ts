import { WardenError, hasControlCharacters } from '@warden/core';
import type { HttpMethod } from '@warden/cloudflare';
import type { UpstreamRequest } from './sandbox.types.ts';

const METHODS: readonly HttpMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
const FIELDS = new Set(['method', 'path', 'query', 'body', 'contentType', 'rawBody']);
const MAX_PATH = 4096;
const MAX_QUERY_KEYS = 100;
/**
 * RFC 3986 path characters but `;`: unreserved, sub-delims, `:`, `@`, `%` escapes and `/`.
 * A first, cheap filter; the parent's canonical path (`canonicalizePath` in libs/tools) is the
 * authority, and refuses everything refused here.
 */
const PATH_CHARACTERS = /^[A-Za-z0-9\-._~!$&'()*+,=:@%/]*$/;
export const MEDIA_TYPE =
  /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=("[^"\\\p{Cc}]*"|[A-Za-z0-9!#$&^_.+-]+))*$/u;

function refuse(field: string, message: string): WardenError {
  return new WardenError('invalid_request', `cloudflare.request: ${field} ${message}`, { field });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * `{zone_id}` copied from a spec path template. Only the raw form: braces are never valid
 * unencoded, while an encoded `%7B…%7D` may be a real value (a KV key, say).
 */
const PLACEHOLDER = /\{[^/]*?\}/;

function unfilledPlaceholder(path: string): string | null {
  const text = PLACEHOLDER.exec(path)?.[0];
  if (!text) return null;
  return text.length > 60 ? `${text.slice(0, 57)}...}` : text;
}

function validatePath(path: unknown): string {
  if (typeof path !== 'string' || path === '') throw refuse('path', 'must be a string such as "/zones"');
  if (path.length > MAX_PATH) throw refuse('path', `must be at most ${MAX_PATH} characters`);
  if (!path.startsWith('/'))
    throw refuse('path', 'must be a relative API path starting with "/", e.g. "/zones"');
  if (path.includes('//'))
    throw refuse('path', 'must not contain "//" (no scheme or host; only the API path)');
  if (hasControlCharacters(path)) throw refuse('path', 'must not contain control characters');
  if (path.includes(';')) {
    throw refuse('path', 'must not contain ";" (matrix parameters); put parameters in `query`');
  }
  const placeholder = unfilledPlaceholder(path);
  if (placeholder) {
    throw refuse(
      'path',
      `still has the placeholder ${placeholder} from the API description; put the real value in its place, e.g. \`/zones/\${zoneId}/dns_records\` (encodeURIComponent each value)`,
    );
  }
  if (!PATH_CHARACTERS.test(path)) {
    throw refuse(
      'path',
      'contains characters that must be percent-encoded (use encodeURIComponent for each segment; put parameters in `query`)',
    );
  }
  for (const segment of path.split('/')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw refuse('path', `has an invalid percent-encoding in "${segment}"`);
    }
    if (hasControlCharacters(decoded)) throw refuse('path', 'must not contain encoded control characters');
    if (decoded.split(/[/\\]/).some((part) => part === '.' || part === '..')) {
      throw refuse('path', 'must not contain "." or ".." segments, encoded or not');
    }
    if (/[;\\]/.test(decoded)) throw refuse('path', 'must not contain an encoded ";" or "\\"');
  }
  return path;
}

function validateQuery(query: unknown): Record<string, string | number | boolean> | undefined {
  if (query === undefined || query === null) return undefined;
  if (!isPlainObject(query)) throw refuse('query', 'must be an object of scalar values, e.g. { page: 2 }');
  const out: Record<string, string | number | boolean> = {};
  const entries = Object.entries(query);
  if (entries.length > MAX_QUERY_KEYS) throw refuse('query', `must have at most ${MAX_QUERY_KEYS} keys`);
  for (const [key, value] of entries) {
    if (key === '' || key.length > 256 || hasControlCharacters(key)) {
      throw refuse('query', `has an invalid key ${JSON.stringify(key.slice(0, 50))}`);
    }
    if (value === undefined) continue;
    if (typeof value === 'string' || typeof value === 'boolean') out[key] = value;
    else if (typeof value === 'number' && Number.isFinite(value)) out[key] = value;
    else throw refuse(`query.${key}`, 'must be a string, a finite number or a boolean');
  }
  return out;
}

/**
 * The one gate between sandboxed code and the upstream: anything not matching the contract
 * is refused here, in the parent, whatever the child process claims.
 */
export function validateUpstreamRequest(input: unknown): UpstreamRequest {
  if (!isPlainObject(input)) {
    throw refuse('request', 'must be an object {method, path, query?, body?, contentType?, rawBody?}');
  }
  for (const key of Object.keys(input)) {
    if (!FIELDS.has(key)) {
      throw refuse(
        JSON.stringify(key.slice(0, 50)),
        'is not a request field; use method, path, query, body, contentType or rawBody (Warden adds credentials and other headers)',
      );
    }
  }
  const method = typeof input.method === 'string' ? input.method.toUpperCase() : input.method;
  if (!METHODS.includes(method as HttpMethod)) throw refuse('method', `must be one of ${METHODS.join(', ')}`);
  const path = validatePath(input.path);
  const query = validateQuery(input.query);
  if (input.rawBody !== undefined && typeof input.rawBody !== 'string')
    throw refuse('rawBody', 'must be a string');
  if (input.rawBody !== undefined && input.body !== undefined) {
    throw refuse('body', 'and rawBody cannot both be set');
  }
  let contentType: string | undefined;
  if (input.contentType !== undefined) {
    if (
      typeof input.contentType !== 'string' ||
      input.contentType.length > 200 ||
      !MEDIA_TYPE.test(input.contentType)
    ) {
      throw refuse(
        'contentType',
        'must be a media type such as "application/json" or "text/plain; charset=utf-8"',
      );
    }
    contentType = input.contentType;
  }
  return {
    method: method as HttpMethod,
    path,
    ...(query !== undefined ? { query } : {}),
    ...(input.body !== undefined ? { body: input.body } : {}),
    ...(input.rawBody !== undefined ? { rawBody: input.rawBody } : {}),
    ...(contentType !== undefined ? { contentType } : {}),
  };
}
