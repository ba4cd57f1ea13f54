import { WardenError, hasControlCharacters } from '@warden/core';
import { MEDIA_TYPE } from './request-validation.ts';
import type { R2Operation, R2Request } from './sandbox.types.ts';

const OPS: readonly R2Operation[] = ['list', 'head', 'get', 'put', 'delete'];
const COMMON = ['r2', 'bucket', 'accountId', 'jurisdiction'];
const FIELDS: Readonly<Record<R2Operation, ReadonlySet<string>>> = {
  list: new Set([...COMMON, 'prefix', 'delimiter', 'cursor', 'limit']),
  head: new Set([...COMMON, 'key']),
  get: new Set([...COMMON, 'key', 'as', 'range']),
  put: new Set([...COMMON, 'key', 'body', 'contentType', 'as']),
  delete: new Set([...COMMON, 'key']),
};
/** R2's bucket names: 3–63 lower-case letters, digits and hyphens, not starting or ending with a hyphen. */
const BUCKET = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;
const ACCOUNT = /^[A-Za-z0-9]{1,64}$/;
const MAX_KEY_BYTES = 1024;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Whether a payload from the sandbox is an `r2` call (`{r2: op, …}`) rather than a `cloudflare.request`. */
export function isR2Payload(payload: unknown): boolean {
  return isPlainObject(payload) && Object.hasOwn(payload, 'r2');
}

function text(op: string, field: string, value: unknown, max: number): string {
  if (typeof value !== 'string') throw refuse(op, field, 'must be a string');
  if (Buffer.byteLength(value) > max) throw refuse(op, field, `must be at most ${max} bytes`);
  if (hasControlCharacters(value)) throw refuse(op, field, 'must not contain control characters');
  return value;
}

function refuse(op: string, field: string, message: string): WardenError {
  return new WardenError('invalid_request', `r2.${op}: ${field} ${message}`, { field });
}

function wholeNumber(op: string, field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw refuse(op, field, `must be a whole number from ${min} to ${max}`);
  }
  return value;
}

function validateKey(op: string, value: unknown): string {
  const key = text(op, 'key', value, MAX_KEY_BYTES);
  if (key === '') throw refuse(op, 'key', 'must not be empty');
  // Policy rules match r2://bucket/key by segments: a key they could not name is refused.
  if (key.split('/').some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw refuse(
      op,
      'key',
      'must not have empty, "." or ".." segments (leading, trailing or doubled "/"), so policy rules can match it',
    );
  }
  return key;
}

function validateRange(op: string, value: unknown): R2Request['range'] {
  if (!isPlainObject(value)) throw refuse(op, 'range', 'must be {offset?, length?} or {suffix}');
  for (const k of Object.keys(value)) {
    if (!['offset', 'length', 'suffix'].includes(k))
      throw refuse(op, `range.${k}`, 'is not a range field; use offset, length or suffix');
  }
  if (value.suffix !== undefined) {
    if (value.offset !== undefined || value.length !== undefined) {
      throw refuse(op, 'range', 'takes suffix alone, or offset and length');
    }
    return { suffix: wholeNumber(op, 'range.suffix', value.suffix, 1, Number.MAX_SAFE_INTEGER) };
  }
  if (value.offset === undefined && value.length === undefined)
    throw refuse(op, 'range', 'needs offset, length or suffix');
  return {
    ...(value.offset !== undefined
      ? { offset: wholeNumber(op, 'range.offset', value.offset, 0, Number.MAX_SAFE_INTEGER) }
      : {}),
    ...(value.length !== undefined
      ? { length: wholeNumber(op, 'range.length', value.length, 1, Number.MAX_SAFE_INTEGER) }
      : {}),
  };
}

/**
 * The gate between sandboxed `r2.<op>(…)` calls and the host: anything not matching the
 * contract is refused here, in the parent, whatever the child process claims.
 */
export function validateR2Request(input: unknown): R2Request {
  if (!isPlainObject(input)) throw new WardenError('invalid_request', 'r2: the request must be an object');
  const op = input.r2 as R2Operation;
  if (!OPS.includes(op))
    throw new WardenError('invalid_request', `r2: unknown operation; use ${OPS.join(', ')}`, { field: 'r2' });
  for (const key of Object.keys(input)) {
    if (!FIELDS[op].has(key)) {
      throw refuse(
        op,
        JSON.stringify(key.slice(0, 50)),
        `is not a field of r2.${op}; it takes ${[...FIELDS[op]].filter((f) => f !== 'r2').join(', ')}`,
      );
    }
  }
  if (typeof input.bucket !== 'string' || !BUCKET.test(input.bucket)) {
    throw refuse(op, 'bucket', 'must be an R2 bucket name (3-63 lower-case letters, digits and hyphens)');
  }
  if (input.accountId === undefined || input.accountId === null) {
    throw refuse(op, 'accountId', 'is required: this call has no default account (pass accountId)');
  }
  if (typeof input.accountId !== 'string' || !ACCOUNT.test(input.accountId)) {
    throw refuse(op, 'accountId', 'must be a Cloudflare account id (32 hex characters)');
  }
  const jurisdiction = input.jurisdiction ?? 'default';
  if (jurisdiction !== 'default' && jurisdiction !== 'eu' && jurisdiction !== 'fedramp') {
    throw refuse(op, 'jurisdiction', 'must be "default", "eu" or "fedramp"');
  }
  const base = { op, accountId: input.accountId, jurisdiction, bucket: input.bucket } as const;
  if (op === 'list') {
    return {
      ...base,
      ...(input.prefix !== undefined ? { prefix: text(op, 'prefix', input.prefix, MAX_KEY_BYTES) } : {}),
      ...(input.delimiter !== undefined ? { delimiter: text(op, 'delimiter', input.delimiter, 64) } : {}),
      ...(input.cursor !== undefined ? { cursor: text(op, 'cursor', input.cursor, 4096) } : {}),
      ...(input.limit !== undefined ? { limit: wholeNumber(op, 'limit', input.limit, 1, 1000) } : {}),
    };
  }
  const key = validateKey(op, input.key);
  if (op === 'head' || op === 'delete') return { ...base, key };
  const as = input.as ?? 'text';
  if (as !== 'text' && as !== 'json' && as !== 'base64')
    throw refuse(op, 'as', 'must be "text", "json" or "base64"');
  if (op === 'get') {
    return {
      ...base,
      key,
      as,
      ...(input.range !== undefined ? { range: validateRange(op, input.range) } : {}),
    };
  }
  if (typeof input.body !== 'string') {
    throw refuse(
      op,
      'body',
      as === 'base64' ? 'must be a base64 string' : "must be a string (or any JSON value with as: 'json')",
    );
  }
  if (as === 'base64' && !/^[A-Za-z0-9+/]*={0,2}$/.test(input.body.replace(/\s+/g, ''))) {
    throw refuse(op, 'body', 'is not valid base64');
  }
  let contentType: string | undefined;
  if (input.contentType !== undefined) {
    if (
      typeof input.contentType !== 'string' ||
      input.contentType.length > 200 ||
      !MEDIA_TYPE.test(input.contentType)
    ) {
      throw refuse(op, 'contentType', 'must be a media type such as "text/plain" or "image/png"');
    }
    contentType = input.contentType;
  }
  return { ...base, key, as, body: input.body, ...(contentType !== undefined ? { contentType } : {}) };
}
