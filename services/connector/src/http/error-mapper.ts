import type { ErrorCode } from '@warden/core';
import { WardenError, assertNever, isWardenError } from '@warden/core';
import { isDatabaseUnavailable } from '@warden/db';
import type { FastifySchemaCompiler } from 'fastify';
import { safeParse } from 'zod/v4/core';
import type { $ZodIssue, $ZodType } from 'zod/v4/core';

export interface WireError {
  readonly status: number;
  readonly body: {
    error: { code: string; message: string; field?: string; request_id?: string; details?: unknown };
  };
  readonly headers: Record<string, string>;
}

/** The one place error codes become HTTP statuses. Exhaustive over the ErrorCode union. */
export function httpStatus(code: ErrorCode): number {
  switch (code) {
    case 'invalid_request':
    case 'invalid_credential':
      return 400;
    case 'payload_too_large':
      return 413;
    case 'unauthenticated':
      return 401;
    case 'forbidden':
    case 'policy_denied':
    case 'self_approval':
      return 403;
    case 'not_found':
      return 404;
    case 'conflict':
      return 409;
    case 'rate_limited':
      return 429;
    case 'upstream_error':
      return 502;
    case 'unavailable':
      return 503;
    case 'upstream_timeout':
      return 504;
    case 'integrity_failure':
    case 'internal':
      return 500;
    default:
      return assertNever(code);
  }
}

/**
 * HTTP-protocol refusals that have no error code of their own (405, 414, 415, 431, 408): they
 * keep the closest code of the union and carry the precise status, so clients can switch on
 * either. Only the mapper and the framework hooks in app.ts set it.
 */
const PROTOCOL_STATUS = 'httpStatus';

export function protocolError(
  status: 405 | 408 | 414 | 415 | 431,
  message: string,
  details: { field?: string; allow?: string } = {},
): WardenError {
  return new WardenError('invalid_request', message, { [PROTOCOL_STATUS]: status, ...details });
}

interface FastifyLikeError {
  code?: string;
  statusCode?: number;
  message?: string;
}

/** Fastify's own request errors, restated in our vocabulary with the field and the fix. */
function fromFastify(error: FastifyLikeError, bodyLimit: number): WardenError | null {
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new WardenError(
        'invalid_request',
        'body: is not valid JSON; send a JSON object with Content-Type: application/json',
        { field: 'body' },
      );
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new WardenError(
        'payload_too_large',
        `body: exceeds the ${bodyLimit}-byte limit (BODY_LIMIT_BYTES); send a smaller body`,
        { field: 'body' },
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return protocolError(
        415,
        'content-type: is not accepted; send the body as JSON with Content-Type: application/json',
        { field: 'content-type' },
      );
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new WardenError('invalid_request', 'body: Content-Length does not match the body', {
        field: 'body',
      });
    case 'FST_ERR_BAD_URL':
      return new WardenError(
        'invalid_request',
        'path: is not a valid URL path (bad percent-encoding); encode each path segment with encodeURIComponent',
        { field: 'path' },
      );
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return protocolError(
        414,
        `path: a path parameter is longer than ${MAX_PATH_PARAM_CHARS} characters (percent-encoded); no id or identifier is that long`,
        { field: 'path' },
      );
    default:
      break;
  }
  if (error instanceof SyntaxError && (error as FastifyLikeError).statusCode === 400) {
    return new WardenError('invalid_request', 'body: is not valid JSON', { field: 'body' });
  }
  // Any other request-level refusal of the framework keeps its status, in our envelope.
  const status = error.statusCode;
  if (typeof error.code === 'string' && error.code.startsWith('FST_') && status && status < 500) {
    return new WardenError('invalid_request', `request: ${error.message ?? 'was refused'}`, {
      [PROTOCOL_STATUS]: status,
    });
  }
  return null;
}

/** Longest path parameter the router accepts: a 256-character identifier, every character 4 UTF-8 bytes, percent-encoded. */
export const MAX_PATH_PARAM_CHARS = 256 * 4 * 3;

/**
 * SQLSTATEs of values PostgreSQL cannot store or read as their type (NUL in text, `\u0000` or a
 * lone surrogate in jsonb, out-of-range numbers and times, over-long strings). The routes refuse
 * such input by field first; reaching the database with one is still the caller's input, not an
 * internal error.
 */
const UNSTORABLE_INPUT_CODES = new Set([
  '22001', // string_data_right_truncation
  '22003', // numeric_value_out_of_range
  '22007', // invalid_datetime_format
  '22008', // datetime_field_overflow
  '22021', // character_not_in_repertoire (NUL in text)
  '22P02', // invalid_text_representation (malformed JSON text, lone surrogate escapes)
  '22P05', // untranslatable_character (\u0000 in jsonb)
]);

function fromDatabase(error: unknown): WardenError | null {
  for (let e: unknown = error, depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const { code } = e as { code?: unknown };
    if (typeof code === 'string' && UNSTORABLE_INPUT_CODES.has(code)) {
      return new WardenError(
        'invalid_request',
        'request: a value cannot be stored (a NUL character, invalid Unicode, or a number or time out of range); correct the text fields and retry',
      );
    }
    e = (e as { cause?: unknown }).cause;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Schema validation: every route schema is compiled here, so a failed check becomes one
// sentence naming the field and the fix, never the validator's own wording.

type Part = 'body' | 'querystring' | 'params' | 'headers';
type PathKey = PropertyKey;

interface ZodDef {
  readonly type: string;
  readonly innerType?: $ZodType;
  readonly in?: $ZodType;
  readonly shape?: Record<string, $ZodType>;
  readonly element?: $ZodType;
  readonly valueType?: $ZodType;
  readonly options?: readonly $ZodType[];
}

const WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'readonly', 'catch', 'nonoptional']);

function defOf(schema: $ZodType): ZodDef {
  return schema._zod.def as unknown as ZodDef;
}

/** The schema itself, seen through optional/default/pipe wrappers. */
function unwrap(schema: $ZodType): $ZodType {
  let current = schema;
  for (let i = 0; i < 10; i++) {
    const def = defOf(current);
    if (WRAPPERS.has(def.type) && def.innerType) current = def.innerType;
    else if (def.type === 'pipe' && def.in) current = def.in;
    else break;
  }
  return current;
}

/** A union as the option the data takes (by its literal discriminator), else the schema itself. */
function chosen(schema: $ZodType, value: unknown): $ZodType {
  const inner = unwrap(schema);
  const def = defOf(inner);
  if (def.type !== 'union') return inner;
  return (def.options ?? []).find((option) => literalsMatch(option, value)) ?? inner;
}

function literalsMatch(option: $ZodType, value: unknown): boolean {
  const shape = defOf(unwrap(option)).shape;
  if (!shape || !isRecord(value)) return false;
  return Object.entries(shape).every(
    ([key, field]) => defOf(unwrap(field)).type !== 'literal' || safeParse(field, value[key]).success,
  );
}

/** The sub-schema at `path`, or null where the path leaves what the schema describes. */
function schemaAt(schema: $ZodType, path: readonly PathKey[], data: unknown): $ZodType | null {
  let current: $ZodType | null = schema;
  let value = data;
  for (const key of path) {
    if (!current) return null;
    const def = defOf(chosen(current, value));
    if (def.type === 'object') current = def.shape?.[String(key)] ?? null;
    else if (def.type === 'array') current = def.element ?? null;
    else if (def.type === 'record') current = def.valueType ?? null;
    else return null;
    value =
      isRecord(value) || Array.isArray(value) ? (value as Record<PropertyKey, unknown>)[key] : undefined;
  }
  return current;
}

/** A field's `.describe()` text, on the field or on what it wraps. */
function describedAs(schema: $ZodType | null): string | undefined {
  if (!schema) return undefined;
  const own = (schema as { description?: string }).description;
  return own ?? (unwrap(schema) as { description?: string }).description;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function valueAt(data: unknown, path: readonly PathKey[]): unknown {
  let value = data;
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** `authorization.api_token`, `rules[0].path`; query and path parameters by their own names. */
export function fieldName(part: Part, path: readonly PathKey[]): string {
  let name = '';
  for (const key of path) {
    if (typeof key === 'number') name += `[${key}]`;
    else name += name ? `.${String(key)}` : String(key);
  }
  return name || (part === 'body' ? 'body' : part === 'querystring' ? 'query' : part);
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'number') return Number.isNaN(value) ? 'not a number' : 'a number';
  if (typeof value === 'string') return 'a string';
  if (typeof value === 'boolean') return 'a boolean';
  return typeof value;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'a JSON object',
  record: 'a JSON object',
  array: 'an array',
  null: 'null',
  date: 'a date',
};

function list(values: readonly unknown[]): string {
  return values.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(', ');
}

function sizeLimit(
  issue: { origin?: string },
  bound: unknown,
  inclusive: boolean | undefined,
  most: boolean,
) {
  const n = typeof bound === 'bigint' ? Number(bound) : (bound as number);
  const edge = inclusive === false ? (most ? n - 1 : n + 1) : n;
  const word = most ? 'at most' : 'at least';
  switch (issue.origin) {
    case 'string':
      return edge === 1 && !most ? 'must not be empty' : `must be ${word} ${edge} characters long`;
    case 'array':
    case 'set':
      return edge === 1 && !most ? 'must list at least one item' : `must have ${word} ${edge} items`;
    default:
      return `must be ${word} ${edge}`;
  }
}

interface IssueContext {
  readonly part: Part;
  readonly data: unknown;
  readonly schema: $ZodType;
  readonly route: string;
}

/** One problem as `field: what is wrong and how to fix it`. */
function describeIssue(issue: $ZodIssue, ctx: IssueContext): { field: string; message: string } {
  const path = issue.path as PathKey[];
  const field = fieldName(ctx.part, path);
  const received = valueAt(ctx.data, path);
  const at = (message: string, name = field) => ({ field: name, message: `${name}: ${message}` });
  switch (issue.code) {
    case 'invalid_type': {
      if (path.length === 0 && ctx.part === 'body') {
        return at(
          received === undefined || received === null
            ? 'is required; send a JSON object with Content-Type: application/json'
            : `must be a JSON object, not ${kindOf(received)}; send it with Content-Type: application/json`,
        );
      }
      if (received === undefined) {
        const description = describedAs(schemaAt(ctx.schema, path, ctx.data));
        return at(`is required${description ? ` (${description.replace(/\.$/, '')})` : ''}`);
      }
      if (ctx.part === 'querystring' && Array.isArray(received)) {
        return at('is given more than once; pass it once');
      }
      if (issue.expected === 'int') return at('must be a whole number');
      const expected = EXPECTED[issue.expected] ?? issue.expected;
      // Query and path values arrive as text and are converted: a type name would not help.
      if (ctx.part !== 'body') return at(`must be ${expected}`);
      return at(`must be ${expected}, not ${kindOf(received)}`);
    }
    case 'too_small':
      return at(sizeLimit(issue, issue.minimum, issue.inclusive, false));
    case 'too_big':
      return at(sizeLimit(issue, issue.maximum, issue.inclusive, true));
    case 'invalid_value':
      return at(`must be one of: ${list(issue.values)}`);
    case 'invalid_format':
      return at(
        issue.format === 'url'
          ? 'must be an absolute URL such as https://example.com/path'
          : issue.format === 'regex'
            ? 'does not have the expected form; see the API reference at /docs'
            : `must be a valid ${issue.format}`,
      );
    case 'not_multiple_of':
      return at(`must be a multiple of ${String(issue.divisor)}`);
    case 'unrecognized_keys': {
      const key = issue.keys[0] ?? '';
      const name = fieldName(ctx.part, [...path, key]);
      const holder = schemaAt(ctx.schema, path, ctx.data);
      const shape = holder ? (defOf(chosen(holder, valueAt(ctx.data, path))).shape ?? {}) : {};
      const known = Object.keys(shape);
      if (ctx.part === 'querystring') {
        return at(
          known.length === 0
            ? `is not a query parameter of ${ctx.route}, which takes none; remove it`
            : `is not a query parameter of ${ctx.route}; it accepts ${list(known)}`,
          name,
        );
      }
      return at(
        `is not a recognised field; remove it or check its spelling${known.length ? ` (accepted here: ${list(known)})` : ''}`,
        name,
      );
    }
    case 'invalid_union': {
      if ('options' in issue && Array.isArray(issue.options)) {
        return at(`must be one of: ${list(issue.options as unknown[])}`);
      }
      const expected = issue.errors
        .map((alternative) => alternative[0])
        .filter((first) => first?.code === 'invalid_type')
        .map((first) => EXPECTED[(first as { expected: string }).expected] ?? '');
      return at(
        expected.length === issue.errors.length && expected.length > 0
          ? `must be ${expected.join(' or ')}, not ${kindOf(received)}`
          : 'does not match any accepted form; see the API reference at /docs',
      );
    }
    case 'invalid_key':
      return at('has a key that is not accepted; see the API reference at /docs');
    case 'invalid_element':
      return at('has an element that is not accepted; see the API reference at /docs');
    case 'custom':
      // Refinements in our schemas are written as the fix already ("must be an ISO 8601 time …").
      return at(issue.message);
    default:
      return at('is not valid; see the API reference at /docs');
  }
}

/** The WardenError for a failed schema check: the first problem, and which other fields have one. */
export function schemaError(issues: readonly $ZodIssue[], ctx: IssueContext): WardenError {
  const problems = issues.map((issue) => describeIssue(issue, ctx));
  const [first, ...rest] = problems;
  if (!first) return new WardenError('invalid_request', 'request: is not valid');
  const others = [...new Set(rest.map((p) => p.field).filter((f) => f !== first.field))];
  const more = others.length ? ` (also check ${list(others)})` : '';
  return new WardenError('invalid_request', `${first.message}${more}`, { field: first.field });
}

/**
 * Fastify's validator compiler for our zod route schemas (replaces the type provider's, whose
 * errors carry zod's own wording): failures come out as a WardenError from `schemaError`.
 */
export const validatorCompiler: FastifySchemaCompiler<$ZodType> = ({ schema, httpPart, method, url }) => {
  const part = (httpPart ?? 'body') as Part;
  return (received: unknown) => {
    // Fastify hands a missing body over as null: absent, so an optional body may be left out.
    const data = part === 'body' && received === null ? undefined : received;
    const result = safeParse(schema, data);
    if (result.success) return { value: result.data };
    return { error: schemaError(result.error.issues, { part, data, schema, route: `${method} ${url}` }) };
  };
};

export function toWireError(error: unknown, options: { requestId: string; bodyLimit: number }): WireError {
  let mapped: WardenError;
  if (isWardenError(error)) mapped = error;
  else {
    mapped =
      fromFastify(error as FastifyLikeError, options.bodyLimit) ??
      fromDatabase(error) ??
      (isDatabaseUnavailable(error)
        ? new WardenError('unavailable', 'the database is unavailable; retry shortly', {
            dependency: 'database',
          })
        : new WardenError(
            'internal',
            `internal error; quote request id ${options.requestId} when reporting it`,
          ));
  }
  const override = mapped.details[PROTOCOL_STATUS];
  const status = typeof override === 'number' ? override : httpStatus(mapped.code);
  const headers: Record<string, string> = {};
  if (mapped.code === 'rate_limited' && typeof mapped.details.retryAfterSeconds === 'number') {
    headers['retry-after'] = String(Math.max(1, Math.ceil(mapped.details.retryAfterSeconds)));
  }
  if (mapped.code === 'unauthenticated') headers['www-authenticate'] = 'Bearer';
  if (status === 405 && typeof mapped.details.allow === 'string') headers.allow = mapped.details.allow;
  // Integrity failures say only that: which check failed is for the server log.
  const message =
    mapped.code === 'integrity_failure'
      ? `the stored credential could not be decrypted; quote request id ${options.requestId} when reporting it`
      : mapped.message;
  return {
    status,
    headers,
    body: {
      error: {
        code: mapped.code,
        message,
        ...(typeof mapped.details.field === 'string' ? { field: mapped.details.field } : {}),
        ...(status >= 500 ? { request_id: options.requestId } : {}),
      },
    },
  };
}
